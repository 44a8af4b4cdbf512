//! The messages monitors exchange and their compact binary encoding.
//!
//! Every message carries the sender's gossip (its incarnation, whether it abstains, the highest
//! epoch it has seen, its current votes and the recovery progress it knows) followed by one
//! [`Kind`]. Integers are LEB128 varints and members are named by their index in the sorted
//! cluster (the envelope carries a fingerprint of that list, so two nodes configured with
//! different clusters never misread each other's indices). At N = 20 with every peer voted down
//! and every recovery in flight a datagram stays under ~900 bytes.

use super::Millis;

/// How far a recovery has come; gossiped so a new coordinator resumes where the old one stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Verdict reached; nothing done yet.
    Verdict = 0,
    Drained = 1,
    Checked = 2,
    Recovered = 3,
    /// The target came back (refuted) and was put back into service.
    Restored = 4,
}

impl Stage {
    fn from_u8(v: u8) -> Option<Stage> {
        Some(match v {
            0 => Stage::Verdict,
            1 => Stage::Drained,
            2 => Stage::Checked,
            3 => Stage::Recovered,
            4 => Stage::Restored,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub target: usize,
    /// The target's incarnation the verdict was about.
    pub incarnation: u64,
    /// How long ago (at sending) the verdict was reached.
    pub age: Millis,
    pub stage: Stage,
    /// The epoch under which `stage` was reached.
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Are you alive? Answered with an `Ack` echoing `nonce`.
    Ping {
        nonce: u32,
    },
    Ack {
        nonce: u32,
    },
    /// Probe `target` for me and forward its ack as a `RelayAck` with my `nonce`.
    PingReq {
        nonce: u32,
        target: usize,
    },
    RelayAck {
        nonce: u32,
        target: usize,
        target_incarnation: u64,
    },
    /// Promise me `epoch` (a new lease or a renewal); `round` is echoed in the answer.
    Prepare {
        epoch: u64,
        round: u64,
    },
    Promise {
        epoch: u64,
        round: u64,
        granted: bool,
    },
    /// Gossip only: pushed when votes or progress change, so they spread without waiting for
    /// the next probe.
    Gossip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub incarnation: u64,
    pub abstaining: bool,
    pub highest_epoch: u64,
    /// (target, the target's incarnation) this sender currently votes down.
    pub votes: Vec<(usize, u64)>,
    pub progress: Vec<Progress>,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl Message {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put(out, self.incarnation);
        out.push(u8::from(self.abstaining));
        put(out, self.highest_epoch);
        out.push(self.votes.len() as u8);
        for (target, inc) in &self.votes {
            out.push(*target as u8);
            put(out, *inc);
        }
        out.push(self.progress.len() as u8);
        for p in &self.progress {
            out.push(p.target as u8);
            put(out, p.incarnation);
            put(out, p.age);
            out.push(p.stage as u8);
            put(out, p.epoch);
        }
        match &self.kind {
            Kind::Ping { nonce } => {
                out.push(1);
                put(out, u64::from(*nonce));
            }
            Kind::Ack { nonce } => {
                out.push(2);
                put(out, u64::from(*nonce));
            }
            Kind::PingReq { nonce, target } => {
                out.push(3);
                put(out, u64::from(*nonce));
                out.push(*target as u8);
            }
            Kind::RelayAck {
                nonce,
                target,
                target_incarnation,
            } => {
                out.push(4);
                put(out, u64::from(*nonce));
                out.push(*target as u8);
                put(out, *target_incarnation);
            }
            Kind::Prepare { epoch, round } => {
                out.push(5);
                put(out, *epoch);
                put(out, *round);
            }
            Kind::Promise {
                epoch,
                round,
                granted,
            } => {
                out.push(6);
                put(out, *epoch);
                put(out, *round);
                out.push(u8::from(*granted));
            }
            Kind::Gossip => out.push(7),
        }
    }

    /// Decodes a whole body; `members` bounds every index.
    pub fn decode(bytes: &[u8], members: usize) -> Result<Message, Malformed> {
        let mut r = Reader { bytes, at: 0 };
        let index = |r: &mut Reader| -> Result<usize, Malformed> {
            let i = usize::from(r.byte()?);
            if i < members {
                Ok(i)
            } else {
                Err(Malformed)
            }
        };
        let incarnation = r.varint()?;
        let abstaining = match r.byte()? {
            0 => false,
            1 => true,
            _ => return Err(Malformed),
        };
        let highest_epoch = r.varint()?;
        let n = usize::from(r.byte()?);
        let mut votes = Vec::with_capacity(n.min(members));
        for _ in 0..n {
            votes.push((index(&mut r)?, r.varint()?));
        }
        let n = usize::from(r.byte()?);
        let mut progress = Vec::with_capacity(n.min(members));
        for _ in 0..n {
            progress.push(Progress {
                target: index(&mut r)?,
                incarnation: r.varint()?,
                age: r.varint()?,
                stage: Stage::from_u8(r.byte()?).ok_or(Malformed)?,
                epoch: r.varint()?,
            });
        }
        let nonce = |r: &mut Reader| u32::try_from(r.varint()?).map_err(|_| Malformed);
        let kind = match r.byte()? {
            1 => Kind::Ping {
                nonce: nonce(&mut r)?,
            },
            2 => Kind::Ack {
                nonce: nonce(&mut r)?,
            },
            3 => Kind::PingReq {
                nonce: nonce(&mut r)?,
                target: index(&mut r)?,
            },
            4 => Kind::RelayAck {
                nonce: nonce(&mut r)?,
                target: index(&mut r)?,
                target_incarnation: r.varint()?,
            },
            5 => Kind::Prepare {
                epoch: r.varint()?,
                round: r.varint()?,
            },
            6 => Kind::Promise {
                epoch: r.varint()?,
                round: r.varint()?,
                granted: match r.byte()? {
                    0 => false,
                    1 => true,
                    _ => return Err(Malformed),
                },
            },
            7 => Kind::Gossip,
            _ => return Err(Malformed),
        };
        if r.at != bytes.len() {
            return Err(Malformed);
        }
        Ok(Message {
            incarnation,
            abstaining,
            highest_epoch,
            votes,
            progress,
            kind,
        })
    }
}

pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn byte(&mut self) -> Result<u8, Malformed> {
        let b = *self.bytes.get(self.at).ok_or(Malformed)?;
        self.at += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(Malformed)?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // Reject overlong and overflowing encodings so one value has one encoding.
                if (shift > 0 && b == 0) || (shift == 63 && b > 1) {
                    return Err(Malformed);
                }
                return Ok(v);
            }
        }
        Err(Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            Kind::Ping { nonce: 7 },
            Kind::Ack { nonce: u32::MAX },
            Kind::PingReq {
                nonce: 1,
                target: 4,
            },
            Kind::RelayAck {
                nonce: 2,
                target: 3,
                target_incarnation: 1_800_000_000_000,
            },
            Kind::Prepare {
                epoch: 9,
                round: 123_456,
            },
            Kind::Promise {
                epoch: 9,
                round: 123_456,
                granted: true,
            },
            Kind::Gossip,
        ];
        for kind in kinds {
            let m = Message {
                incarnation: 1_800_000_000_123,
                abstaining: true,
                highest_epoch: 42,
                votes: vec![(1, 5), (4, u64::MAX)],
                progress: vec![Progress {
                    target: 2,
                    incarnation: 77,
                    age: 31_000,
                    stage: Stage::Checked,
                    epoch: 40,
                }],
                kind,
            };
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(Message::decode(&out, 5), Ok(m));
        }
    }

    #[test]
    fn out_of_range_index_truncation_and_trailing_bytes_are_malformed() {
        let m = Message {
            incarnation: 1,
            abstaining: false,
            highest_epoch: 0,
            votes: vec![(4, 1)],
            progress: vec![],
            kind: Kind::Gossip,
        };
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(Message::decode(&out, 4), Err(Malformed));
        assert_eq!(Message::decode(&out[..out.len() - 1], 5), Err(Malformed));
        out.push(0);
        assert_eq!(Message::decode(&out, 5), Err(Malformed));
    }
}
