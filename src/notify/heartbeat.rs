//! The heartbeat: who sends it and when it is due.
//!
//! One monitor sends it: the state's primary sender while it is alive, else the first live
//! backup, in the order the state lists them (`heartbeat_config`). Time is cut into slots of
//! the interval, counted from the Unix epoch, and one heartbeat is due per slot: the sender's
//! first call in a slot sends it and the alert ledger suppresses the rest, across restarts.
//! When the primary dies after sending, a backup may send a second one in the same slot; that
//! is the fallback working, not a duplicate of one event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::suppress::seconds;
use super::Alert;
use crate::state::HeartbeatConfig;
use crate::template::{EmailEvent, Heartbeat};

/// Who sends the heartbeat now: the primary if `alive`, else the first live backup; `None`
/// when none of them is alive.
pub fn sender(config: &HeartbeatConfig, alive: impl Fn(&str) -> bool) -> Option<&str> {
    config
        .primary_sender
        .iter()
        .chain(config.backup_senders.iter())
        .map(String::as_str)
        .find(|name| alive(name))
}

fn interval(config: &HeartbeatConfig) -> u64 {
    u64::from(config.interval_minutes.max(1)) * 60
}

/// The slot `now` falls in.
pub fn slot(config: &HeartbeatConfig, now: SystemTime) -> u64 {
    seconds(now) / interval(config)
}

/// When the slot after the one `now` falls in begins: the next heartbeat is due then.
pub fn next_due(config: &HeartbeatConfig, now: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((slot(config, now) + 1) * interval(config))
}

/// The heartbeat `sender` sends for the slot `now` falls in. Its ledger entry lasts until the
/// slot ends.
pub fn alert(config: &HeartbeatConfig, sender: &str, now: SystemTime) -> Alert {
    Alert {
        event: EmailEvent::Heartbeat(Heartbeat {
            sender: sender.to_string(),
            interval_minutes: config.interval_minutes,
        }),
        incident: slot(config, now).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HeartbeatConfig {
        HeartbeatConfig {
            primary_sender: Some("master".into()),
            backup_senders: vec!["shop-web1".into(), "shop-web2".into()],
            interval_minutes: 60,
        }
    }

    #[test]
    fn the_primary_sends_while_it_is_alive() {
        assert_eq!(sender(&config(), |_| true), Some("master"));
    }

    #[test]
    fn with_the_primary_down_the_first_live_backup_sends() {
        assert_eq!(sender(&config(), |n| n != "master"), Some("shop-web1"));
        assert_eq!(sender(&config(), |n| n == "shop-web2"), Some("shop-web2"));
        assert_eq!(sender(&config(), |_| false), None);
    }

    #[test]
    fn one_heartbeat_is_due_per_interval() {
        let c = config();
        let t = UNIX_EPOCH + Duration::from_secs(3600 * 10 + 5);
        assert_eq!(slot(&c, t), 10);
        assert_eq!(slot(&c, t + Duration::from_secs(3594)), 10);
        assert_eq!(slot(&c, t + Duration::from_secs(3595)), 11);
        assert_eq!(next_due(&c, t), UNIX_EPOCH + Duration::from_secs(3600 * 11));
        let a = alert(&c, "shop-web1", t);
        assert_eq!(a.key(), "heartbeat/shop-web1/10");
    }
}
