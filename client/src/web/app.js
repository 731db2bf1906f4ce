// The cluster console: plain JavaScript over the client API's own REST endpoints.
"use strict";

const STATUS_INTERVAL_MS = 1000;
const MAX_FEED_ENTRIES = 200;

const $ = (id) => document.getElementById(id);

// One session per page, so that a session read sees this page's own writes.
const sessionId = "web-" + Math.random().toString(36).slice(2, 10);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

// Calls the API; resolves with the JSON answer or rejects with the API's error message.
async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new Error("the client API did not answer (" + error.message + ")");
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (_) {
    // fall through: an answer that is not JSON is reported by its status
  }
  if (!response.ok) {
    const reason = answer && answer.error ? answer.error : response.statusText;
    throw new Error(response.status + " " + reason);
  }
  return answer;
}

function clock() {
  return new Date().toLocaleTimeString([], { hour12: false });
}

function showError(target, error) {
  target.replaceChildren(element("span", { class: "error", text: error.message }));
}

// ---- write ---------------------------------------------------------------------------

$("write-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("write-submit");
  const result = $("write-result");
  button.disabled = true;
  try {
    const answer = await api("POST", "/write", {
      key: $("write-key").value,
      value: $("write-value").value,
      session_id: sessionId,
    });
    result.replaceChildren(
      element("span", { class: "ok", text: "✓ written" }),
      " ",
      element("span", { class: "meta", text: `${answer.key} in slot ${answer.slot}` })
    );
    if (!$("read-key").value) $("read-key").value = answer.key;
  } catch (error) {
    showError(result, error);
  } finally {
    button.disabled = false;
  }
});

// ---- read ----------------------------------------------------------------------------

$("session-id").textContent = sessionId;

$("read-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("read-submit");
  const result = $("read-result");
  const consistency = document.querySelector('input[name="consistency"]:checked').value;
  button.disabled = true;
  try {
    const answer = await api("POST", "/read", {
      key: $("read-key").value,
      consistency,
      session_id: sessionId,
    });
    const value =
      answer.value === null
        ? element("span", { class: "value none", id: "read-value", text: "no value (never written)" })
        : element("span", { class: "value", id: "read-value", text: answer.value });
    result.replaceChildren(
      value,
      element("span", {
        class: "meta",
        id: "read-meta",
        text: `${answer.consistency} read of ${answer.key} at slot ${answer.slot}`,
      })
    );
  } catch (error) {
    showError(result, error);
  } finally {
    button.disabled = false;
  }
});

// ---- cluster -------------------------------------------------------------------------

function nodeState(node, highestApplied) {
  if (!node.healthy) return "down (no answer)";
  switch (node.role) {
    case "acceptor":
      return `promised ${node.promised_ballot} · accepted ≤ ${node.accepted_slot_max}`;
    case "proposer": {
      const parts = [];
      if (node.state === "leader") parts.push(element("span", { class: "badge", text: "LEADER" }));
      parts.push(`${node.state} · ballot ${node.ballot} · decided ≤ ${node.decided_slot_max}`);
      return parts;
    }
    case "learner": {
      const fraction = highestApplied > 0 ? Math.min(1, node.applied_slot / highestApplied) : 1;
      const bar = element("span", { class: "bar" }, element("span", { style: `width:${Math.round(fraction * 100)}%` }));
      return [
        element(
          "span",
          { class: "progress" },
          bar,
          `applied ${node.applied_slot}`,
          element("span", { class: "hint", text: `${node.key_count} keys` })
        ),
      ];
    }
    default:
      return "";
  }
}

function renderStatus(status) {
  const nodes = status.nodes || [];
  const highestApplied = Math.max(0, ...nodes.filter((n) => n.role === "learner" && n.healthy).map((n) => n.applied_slot));
  const rows = nodes.map((node) => {
    const health = node.healthy ? "up" : "down";
    const state = nodeState(node, highestApplied);
    return element(
      "tr",
      { class: health, "data-node": node.name, "data-health": health },
      element("td", {}, element("span", { class: `dot ${health}`, title: health })),
      element("td", { class: "name", text: node.name }),
      element("td", {}, element("span", { class: `role ${node.role}`, text: node.role })),
      element("td", { class: "address", text: node.address }),
      element("td", { class: "state" }, ...(Array.isArray(state) ? state : [state]))
    );
  });
  $("nodes").replaceChildren(...(rows.length ? rows : [element("tr", {}, element("td", { colspan: 5, class: "empty", text: "no nodes known" }))]));

  const leader = status.leader;
  setPill("summary-leader", "leader", leader ? `proposer${leader.proposer} · ballot ${leader.ballot}` : "none", !leader);
  const quorum = status.quorum || {};
  setPill(
    "summary-quorum",
    "quorum",
    `${quorum.healthy_acceptors ?? "?"}/${quorum.acceptors ?? "?"} acceptors`,
    quorum.available === false
  );
  const applied = (status.learners || []).map((learner) => learner.applied_slot);
  const lowest = Math.min(...applied);
  const highest = Math.max(...applied);
  const appliedText = !applied.length ? "—" : lowest === highest ? `slot ${highest}` : `slots ${lowest}–${highest}`;
  setPill("summary-applied", "applied", appliedText, !applied.length);
  const plane = status.node_plane || {};
  const alarms = (status.alarms || []).concat(...nodes.map((node) => node.alarms || []));
  const insecure = plane.security === "insecure";
  setPill(
    "summary-security",
    "nodes",
    (insecure ? "plaintext" : "mutual TLS") + (alarms.length ? ` · ${alarms.length} alarms` : ""),
    insecure || alarms.length > 0
  );
  $("summary-security").title = alarms.length ? alarms.join("\n") : plane.warning || "nodes prove who they are with certificates";
  const down = nodes.filter((node) => !node.healthy).length;
  $("cluster-caption").textContent = `${nodes.length} nodes${down ? ` · ${down} down` : " · all up"}`;
}

function setPill(id, label, value, bad) {
  const pill = $(id);
  pill.replaceChildren(label + " ", element("b", { text: value }));
  pill.classList.toggle("bad", Boolean(bad));
}

async function refreshStatus() {
  try {
    renderStatus(await api("GET", "/status"));
    $("refresh-dot").className = "dot up";
    $("refresh-text").textContent = "live · " + clock();
    $("banner").hidden = true;
  } catch (error) {
    $("refresh-dot").className = "dot down";
    $("refresh-text").textContent = "status unavailable";
    $("banner").textContent = "Cannot load /status: " + error.message;
    $("banner").hidden = false;
  } finally {
    setTimeout(refreshStatus, STATUS_INTERVAL_MS);
  }
}

// ---- change feed ---------------------------------------------------------------------

let feed = null; // { id, source }

function feedNote(text) {
  prependEvent(element("li", { class: "note", text }));
}

function prependEvent(item) {
  const list = $("feed-events");
  list.prepend(item);
  while (list.children.length > MAX_FEED_ENTRIES) list.lastChild.remove();
}

function setFeedStatus(text) {
  $("feed-status").textContent = text;
}

async function startFeed() {
  await stopFeed();
  const patterns = $("feed-patterns").value.split(/[\s,]+/).filter(Boolean);
  const result = $("feed-result");
  try {
    const answer = await api("POST", "/subscribe", { patterns });
    result.replaceChildren();
    const source = new EventSource(answer.events);
    feed = { id: answer.subscription_id, source };
    $("feed-start").disabled = true;
    $("feed-stop").disabled = false;
    setFeedStatus(`connecting · ${patterns.join(" ")}`);
    source.onmessage = (message) => {
      const write = JSON.parse(message.data);
      prependEvent(
        element(
          "li",
          { "data-key": write.key, "data-slot": String(write.slot) },
          element("span", { class: "id", text: "slot " + message.lastEventId }),
          element("span", { class: "key", text: write.key, title: write.key }),
          element("span", { class: "val", text: write.value, title: write.value }),
          element("span", { class: "time", text: clock() })
        )
      );
    };
    source.addEventListener("progress", (message) => {
      const progress = JSON.parse(message.data);
      setFeedStatus(`live at slot ${progress.slot} · ${patterns.join(" ")}`);
    });
    source.addEventListener("lagged", () => feedNote("fell behind: reconnecting from the last change shown"));
    source.addEventListener("too_old", (message) => {
      const data = JSON.parse(message.data);
      showError(result, new Error(data.error));
      stopFeed(false);
    });
    source.addEventListener("unsubscribed", () => {
      feedNote("subscription removed");
      stopFeed(false);
    });
    source.onerror = () => {
      if (feed && feed.source === source) setFeedStatus("disconnected · retrying…");
    };
  } catch (error) {
    showError(result, error);
  }
}

async function stopFeed(unsubscribe = true) {
  if (!feed) return;
  const { id, source } = feed;
  feed = null;
  source.close();
  $("feed-start").disabled = false;
  $("feed-stop").disabled = true;
  setFeedStatus("not watching");
  if (unsubscribe) {
    try {
      await api("POST", "/unsubscribe", { subscription_id: id });
    } catch (error) {
      showError($("feed-result"), error);
    }
  }
}

$("feed-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startFeed();
});
$("feed-stop").addEventListener("click", () => stopFeed());
window.addEventListener("beforeunload", () => {
  if (feed) navigator.sendBeacon("/unsubscribe", new Blob([JSON.stringify({ subscription_id: feed.id })], { type: "application/json" }));
});

refreshStatus();
