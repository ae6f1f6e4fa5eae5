//! Whether an upstream is reachable, so an outage costs one probe and not one request per client.
//!
//! After an upstream fails (unreachable, timed out, `429`, `502`/`503`/`504`) it is *down* for
//! `UPSTREAM_BACKOFF_SECONDS`. While it is down nothing is sent to it: a cached manifest is served
//! stale at once, and a request with nothing cached gets `503` with `Retry-After`. When the back-off
//! has passed, exactly one request at a time is let through as a *probe*; its answer decides — back
//! up (every request goes again), or down for another back-off, each one twice as long as the last,
//! up to [`MAX_BACKOFF_FACTOR`] times the setting.
//!
//! A plain `500` is not an outage: it is an answer about one resource (distribution's proxy answers
//! `500` for a missing digest), and must not take the whole registry offline.
//!
//! The state is per isolate (a Worker isolate is single-threaded and its memory outlives requests):
//! each isolate sends its own probe, at most one per back-off. Pure: time is a parameter.

use std::collections::HashMap;

/// Back-offs double after each failed probe, up to this many times the configured one.
pub const MAX_BACKOFF_FACTOR: u64 = 8;
/// Bound on tracked upstreams per isolate (only configured upstreams are ever tracked).
const MAX_TRACKED: usize = 256;

/// What to do with a request for an upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Healthy: send it.
    Go,
    /// Down, but its back-off is over and no probe is out: send it, as the probe.
    Probe,
    /// Down: send nothing; retry in this many seconds (at least 1).
    Down { retry_in: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Outage {
    /// Failures in a row (the first failure, then each failed probe).
    failures: u32,
    /// Unix seconds until which nothing is sent.
    down_until: u64,
    /// When the probe now out was sent, if one is.
    probe_sent: Option<u64>,
}

/// Per upstream (named by its URL): healthy (absent) or down since its last failure.
#[derive(Debug, Default)]
pub struct Health {
    outages: HashMap<String, Outage>,
}

/// How the back-off behaves: the setting, and how long a probe may stay out before another one
/// may be sent (a probe whose client went away never reports back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// `UPSTREAM_BACKOFF_SECONDS`; 0 turns the back-off off.
    pub seconds: u64,
    /// Longer than any request can take (the upstream timeout, with room for the token dance).
    pub probe_timeout: u64,
}

impl Health {
    /// Whether a request may go to `upstream` at `now`. Admitting a probe marks it as out.
    pub fn admit(&mut self, upstream: &str, now: u64, backoff: Backoff) -> Admit {
        if backoff.seconds == 0 {
            return Admit::Go;
        }
        let Some(outage) = self.outages.get_mut(upstream) else {
            return Admit::Go;
        };
        if now < outage.down_until {
            return Admit::Down {
                retry_in: outage.down_until - now,
            };
        }
        if let Some(sent) = outage.probe_sent {
            if now < sent.saturating_add(backoff.probe_timeout) {
                return Admit::Down { retry_in: 1 };
            }
        }
        outage.probe_sent = Some(now);
        Admit::Probe
    }

    /// Records how a request that was admitted went: `reachable` unless it was an outage. Returns
    /// how long the upstream is now left alone (0 when it is up).
    pub fn record(&mut self, upstream: &str, reachable: bool, now: u64, backoff: Backoff) -> u64 {
        if reachable || backoff.seconds == 0 {
            self.outages.remove(upstream);
            return 0;
        }
        if self.outages.len() >= MAX_TRACKED && !self.outages.contains_key(upstream) {
            self.outages.clear();
        }
        let outage = self.outages.entry(upstream.to_owned()).or_default();
        // A request that went out while healthy and fails while a back-off already runs (many
        // clients at once when the outage began) does not lengthen it.
        if outage.probe_sent.is_none() && now < outage.down_until {
            return outage.down_until - now;
        }
        outage.failures = outage.failures.saturating_add(1);
        let factor = 1u64 << (outage.failures - 1).min(MAX_BACKOFF_FACTOR.trailing_zeros());
        let wait = backoff.seconds.saturating_mul(factor);
        outage.down_until = now.saturating_add(wait);
        outage.probe_sent = None;
        wait
    }

    /// Whether `upstream` is down at `now` (for the status page).
    pub fn is_down(&self, upstream: &str, now: u64) -> bool {
        self.outages
            .get(upstream)
            .is_some_and(|o| now < o.down_until || o.probe_sent.is_some())
    }

    /// What [`Health::admit`] would say, without sending a probe: `Some(retry_in)` when a request
    /// for `upstream` would be refused now. For deciding before a request is handed to an owner.
    pub fn peek(&self, upstream: &str, now: u64, backoff: Backoff) -> Option<u64> {
        if backoff.seconds == 0 {
            return None;
        }
        let outage = self.outages.get(upstream)?;
        if now < outage.down_until {
            return Some(outage.down_until - now);
        }
        let out = outage
            .probe_sent
            .is_some_and(|sent| now < sent.saturating_add(backoff.probe_timeout));
        out.then_some(1)
    }

    /// Learns from elsewhere (an object's owner, which asked upstream) that `upstream` is down for
    /// `seconds` more: this isolate then serves stale at once instead of handing requests on.
    pub fn note_down(&mut self, upstream: &str, now: u64, seconds: u64) {
        if seconds == 0 {
            return;
        }
        if self.outages.len() >= MAX_TRACKED && !self.outages.contains_key(upstream) {
            self.outages.clear();
        }
        let outage = self.outages.entry(upstream.to_owned()).or_default();
        outage.failures = outage.failures.max(1);
        outage.down_until = outage.down_until.max(now.saturating_add(seconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        seconds: 10,
        probe_timeout: 40,
    };
    const U: &str = "https://registry-1.docker.io";

    #[test]
    fn healthy_until_a_failure_then_down_for_the_backoff() {
        let mut h = Health::default();
        assert_eq!(h.admit(U, 100, B), Admit::Go);
        h.record(U, true, 100, B);
        assert_eq!(h.admit(U, 100, B), Admit::Go);
        h.record(U, false, 100, B);
        assert_eq!(h.admit(U, 100, B), Admit::Down { retry_in: 10 });
        assert_eq!(h.admit(U, 109, B), Admit::Down { retry_in: 1 });
        assert!(h.is_down(U, 105));
        assert_eq!(
            h.admit("https://ghcr.io", 105, B),
            Admit::Go,
            "per upstream"
        );
    }

    #[test]
    fn one_probe_at_a_time_after_the_backoff() {
        let mut h = Health::default();
        h.record(U, false, 100, B);
        assert_eq!(h.admit(U, 110, B), Admit::Probe);
        // While the probe is out, everyone else is told to wait.
        assert_eq!(h.admit(U, 110, B), Admit::Down { retry_in: 1 });
        assert_eq!(h.admit(U, 120, B), Admit::Down { retry_in: 1 });
        // The probe succeeds: back up for everyone.
        h.record(U, true, 121, B);
        assert_eq!(h.admit(U, 121, B), Admit::Go);
        assert!(!h.is_down(U, 121));
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_a_cap() {
        let mut h = Health::default();
        h.record(U, false, 0, B);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let Admit::Down { retry_in } = h.admit(U, now, B) else {
                panic!("down after a failure")
            };
            waits.push(retry_in);
            now += retry_in;
            assert_eq!(h.admit(U, now, B), Admit::Probe);
            h.record(U, false, now, B);
        }
        assert_eq!(waits, [10, 20, 40, 80, 80, 80]);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_the_probe_timeout() {
        let mut h = Health::default();
        h.record(U, false, 0, B);
        assert_eq!(h.admit(U, 10, B), Admit::Probe);
        // Its client went away: no report. Another may go once it cannot still be running.
        assert_eq!(h.admit(U, 49, B), Admit::Down { retry_in: 1 });
        assert_eq!(h.admit(U, 50, B), Admit::Probe);
    }

    #[test]
    fn failures_of_requests_sent_before_the_outage_do_not_extend_it() {
        let mut h = Health::default();
        h.record(U, false, 100, B);
        // Fifty requests that were in flight when upstream went down fail one after another.
        for t in 100..105 {
            h.record(U, false, t, B);
        }
        assert_eq!(h.admit(U, 110, B), Admit::Probe);
    }

    #[test]
    fn peeking_sends_no_probe_and_an_owners_word_is_taken() {
        let mut h = Health::default();
        assert_eq!(h.peek(U, 100, B), None);
        h.note_down(U, 100, 7);
        assert_eq!(h.peek(U, 100, B), Some(7));
        assert_eq!(h.peek(U, 107, B), None, "back-off over: a probe may go");
        assert_eq!(h.peek(U, 107, B), None, "peeking sent none");
        assert_eq!(h.admit(U, 107, B), Admit::Probe);
        assert_eq!(h.peek(U, 107, B), Some(1), "one is out now");
        h.record(U, true, 108, B);
        assert_eq!(h.peek(U, 108, B), None);
    }

    #[test]
    fn zero_turns_it_off() {
        let off = Backoff {
            seconds: 0,
            probe_timeout: 40,
        };
        let mut h = Health::default();
        h.record(U, false, 100, off);
        assert_eq!(h.admit(U, 100, off), Admit::Go);
    }
}
