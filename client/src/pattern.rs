//! Key patterns of subscriptions: globs with `*` (any run of characters, even none) and
//! `?` (exactly one character), or literal keys.
//!
//! `\` escapes the next character, so `a\*` matches the key `a*` only. `[`, `]`, `{` and
//! `}` are reserved (shells and other glob dialects give them meanings this one does not
//! have): a pattern using them unescaped is refused rather than silently matched
//! literally.

use std::fmt;

/// The longest pattern, in bytes: a key is at most this long too.
pub const PATTERN_LIMIT_BYTES: usize = crate::limits::KEY_LIMIT_BYTES;

/// One element of a parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A character that must appear as is.
    Literal(char),
    /// `?`: any one character.
    AnyCharacter,
    /// `*`: any run of characters.
    AnyRun,
}

/// A parsed key pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "pattern {:?} {}", self.pattern, self.problem)
    }
}

impl Pattern {
    /// Parses `text`, refusing an empty pattern, one above [`PATTERN_LIMIT_BYTES`], a
    /// trailing lone `\` and the reserved characters `[ ] { }` unescaped.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let refuse = |problem: String| PatternError {
            pattern: text.to_string(),
            problem,
        };
        if text.is_empty() {
            return Err(refuse("is empty".into()));
        }
        if text.len() > PATTERN_LIMIT_BYTES {
            return Err(refuse(format!(
                "is {} bytes, above the limit of {PATTERN_LIMIT_BYTES} bytes",
                text.len()
            )));
        }
        let mut tokens = Vec::new();
        let mut characters = text.chars();
        while let Some(character) = characters.next() {
            let token = match character {
                '\\' => match characters.next() {
                    Some(escaped) => Token::Literal(escaped),
                    None => return Err(refuse("ends with a lone '\\'".into())),
                },
                '*' => Token::AnyRun,
                '?' => Token::AnyCharacter,
                '[' | ']' | '{' | '}' => {
                    return Err(refuse(format!(
                        "uses '{character}', which is reserved: only '*' and '?' are wildcards \
                         (write '\\{character}' to match it literally)"
                    )))
                }
                other => Token::Literal(other),
            };
            // Consecutive stars match what one star matches.
            if !(token == Token::AnyRun && tokens.last() == Some(&Token::AnyRun)) {
                tokens.push(token);
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `key` matches, in time proportional to the key's length times the
    /// pattern's (the classic backtrack to the last star, never exponential).
    pub fn matches(&self, key: &str) -> bool {
        let key: Vec<char> = key.chars().collect();
        let tokens = &self.tokens;
        let (mut token_index, mut key_index) = (0, 0);
        // Where the last star was, and the key position it currently stands for.
        let mut last_star: Option<(usize, usize)> = None;
        while key_index < key.len() {
            match tokens.get(token_index) {
                Some(Token::AnyRun) => {
                    last_star = Some((token_index, key_index));
                    token_index += 1;
                    continue;
                }
                Some(Token::AnyCharacter) => {
                    token_index += 1;
                    key_index += 1;
                    continue;
                }
                Some(Token::Literal(expected)) if *expected == key[key_index] => {
                    token_index += 1;
                    key_index += 1;
                    continue;
                }
                _ => {}
            }
            // A mismatch: let the last star swallow one more character, or fail.
            match last_star {
                Some((star_token, star_key)) => {
                    last_star = Some((star_token, star_key + 1));
                    token_index = star_token + 1;
                    key_index = star_key + 1;
                }
                None => return false,
            }
        }
        tokens[token_index..]
            .iter()
            .all(|token| *token == Token::AnyRun)
    }
}

/// Whether any of `patterns` matches `key`.
pub fn any_matches(patterns: &[Pattern], key: &str) -> bool {
    patterns.iter().any(|pattern| pattern.matches(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(key)
    }

    #[test]
    fn a_literal_pattern_matches_only_its_key() {
        assert!(matches("colour", "colour"));
        assert!(!matches("colour", "colours"));
        assert!(!matches("colour", "colou"));
    }

    #[test]
    fn a_star_matches_any_run_and_a_question_mark_one_character() {
        assert!(matches("user/*", "user/"));
        assert!(matches("user/*", "user/alice/settings"));
        assert!(!matches("user/*", "users/alice"));
        assert!(matches("*", ""));
        assert!(matches("*.cfg", "a.b.cfg"));
        assert!(matches("a*b*c", "a-x-b-y-b-c"));
        assert!(!matches("a*b*c", "a-x-b-y-c-b"));
        assert!(matches("k?", "k1"));
        assert!(!matches("k?", "k"));
        assert!(!matches("k?", "k10"));
        assert!(matches("?ü*", "zü"), "characters, not bytes");
        assert!(matches("**x", "x"));
    }

    #[test]
    fn an_escaped_wildcard_matches_itself() {
        assert!(matches("a\\*", "a*"));
        assert!(!matches("a\\*", "ab"));
        assert!(matches("\\[x\\]", "[x]"));
    }

    #[test]
    fn malformed_patterns_are_refused_saying_why() {
        for (pattern, problem) in [
            ("", "empty"),
            ("abc\\", "lone"),
            ("key[0-9]", "reserved"),
            ("{a,b}", "reserved"),
        ] {
            let error = Pattern::parse(pattern).unwrap_err();
            assert!(error.to_string().contains(problem), "{pattern}: {error}");
        }
        let long = "k".repeat(PATTERN_LIMIT_BYTES + 1);
        assert!(Pattern::parse(&long).is_err());
        assert!(Pattern::parse(&long[1..]).is_ok());
    }

    #[test]
    fn a_pattern_of_many_stars_is_matched_without_exponential_backtracking() {
        // Naive recursive matching takes about 2^100 steps here; this one, 100 x 100.
        let pattern = Pattern::parse(&"*a".repeat(100)).unwrap();
        assert!(!pattern.matches(&("a".repeat(99) + "b")));
        assert!(pattern.matches(&"a".repeat(100)));
    }
}
