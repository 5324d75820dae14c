//! The store's two background tasks. `health` pings Redis every `health_interval` and flips
//! the store between up (share) and down (fall back); `subscribe` keeps the pub/sub
//! subscription to the back-off channel and, after every (re)subscription, replays the whole
//! table to the listener, so a replica that missed messages while Redis was away catches up.
//! The same subscription carries the security-event revocations (their own channel): after
//! every (re)subscription their listener is told, and reads what it missed.
//! Both hold only a `Weak` store and end when it is dropped.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;

use super::Store;

/// How long a table entry is kept past its time: covers the longest probe lease and ramp.
pub(super) const TABLE_KEEP_MS: u64 = 10 * 60 * 1000;

pub(super) async fn health(store: Weak<Store>) {
    loop {
        let Some(interval) = store.upgrade().map(|s| s.health_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(store) = store.upgrade() else { return };
        let mut conn = store.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(store.command_timeout.max(interval / 2), ping).await {
            Ok(Ok(_)) => store.mark_up(),
            Ok(Err(e)) => store.mark_down(&e.to_string()),
            Err(_) => store.mark_down("ping timed out"),
        }
    }
}

pub(super) async fn subscribe(store: Weak<Store>) {
    loop {
        let Some(interval) = store.upgrade().map(|s| s.health_interval) else {
            return;
        };
        if let Err(cause) = subscribed(&store).await {
            tracing::debug!(%cause, "redis subscription ended");
        }
        match store.upgrade() {
            Some(s) => s.subscribed.store(false, Ordering::Relaxed),
            None => return,
        }
        tokio::time::sleep(interval).await;
    }
}

/// One subscription, until it breaks, the store is marked down or dropped. Holds the store
/// only while handling something, so a dropped gateway's store goes away.
async fn subscribed(weak: &Weak<Store>) -> Result<(), String> {
    let store = weak.upgrade().ok_or("store dropped")?;
    let connect = store.client.get_async_pubsub();
    let mut pubsub = tokio::time::timeout(store.connect_timeout + store.command_timeout, connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let revocations = store.revocation_channel();
    pubsub
        .subscribe(&[store.channel(), revocations.clone()])
        .await
        .map_err(|e| e.to_string())?;
    // Messages from now on are queued on the connection: the snapshot cannot miss any.
    let mut ping = store.conn.clone();
    let _: String = tokio::time::timeout(
        store.command_timeout,
        redis::cmd("PING").query_async(&mut ping),
    )
    .await
    .map_err(|_| "ping timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    store.mark_up();
    if let Some((rows, now)) = store.table_snapshot(TABLE_KEEP_MS).await
        && let Some(listener) = store.listener()
    {
        for row in rows {
            listener.apply(&row, now);
        }
    }
    if let Some(listener) = store.revocation_listener() {
        listener.resubscribed();
    }
    store.subscribed.store(true, Ordering::Relaxed);
    let mut check = tokio::time::interval(store.health_interval);
    drop(store);
    let mut messages = pubsub.into_on_message();
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else { return Err("connection closed".to_owned()) };
                let Ok(payload) = msg.get_payload::<String>() else { continue };
                let store = weak.upgrade().ok_or("store dropped")?;
                if msg.get_channel_name() == revocations {
                    deliver_revocation(&store, &payload);
                } else {
                    deliver(&store, &payload);
                }
            }
            _ = check.tick() => {
                let store = weak.upgrade().ok_or("store dropped")?;
                if !store.is_up() {
                    return Err("redis marked down".to_owned());
                }
            }
        }
    }
}

/// `origin field event at status errno now`: everything but `now` goes to the listener, unless
/// this replica sent it (it applied the change before publishing).
fn deliver(store: &Store, payload: &str) {
    let Some((entry, now)) = payload.rsplit_once(' ') else {
        return;
    };
    let Ok(now) = now.parse::<u64>() else { return };
    if entry.split(' ').next() == Some(store.origin()) {
        return;
    }
    if let Some(listener) = store.listener() {
        listener.apply(entry, now);
    }
}

/// `origin field at not_before sealed`: all but the origin to the revocation listener, unless
/// this replica sent it (it applied the revocation before writing it).
fn deliver_revocation(store: &Store, payload: &str) {
    let Some((origin, entry)) = payload.split_once(' ') else {
        return;
    };
    if origin == store.origin() {
        return;
    }
    if let (Some(listener), Some(entry)) =
        (store.revocation_listener(), store.read_revocation(entry))
    {
        listener.apply(entry);
    }
}
