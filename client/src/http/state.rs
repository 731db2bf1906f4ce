//! What every handler of the REST API can reach.

use crate::driver::Driver;
use crate::subscriptions::Subscriptions;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The client API's core and network.
    pub(crate) driver: Arc<Driver>,
    /// This client API's name, such as "client1".
    pub(crate) node_name: String,
    /// The change-notification subscriptions.
    pub(crate) subscriptions: Arc<Subscriptions>,
}
