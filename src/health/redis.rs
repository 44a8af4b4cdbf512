//! A small Redis client (RESP2 over TCP), enough for what a droplet's monitor does with the
//! workers' queues: AUTH, PING, LLEN, LRANGE, LPUSH/RPUSH, LMOVE, HGET/HINCRBY and the one
//! script that requeues a failed job atomically. Every command has a deadline, so a stuck
//! server never stalls the monitor's tick. Errors name `host:port`; the password is only ever
//! written to the socket, never to an error, a log line or `Debug` output.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::template::Secret;

/// How long one command (or connecting) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest bulk string or array accepted from the server: a bound on what a confused or
/// hostile peer can make the monitor allocate.
const MAX_BULK: usize = 64 * 1024 * 1024;
const MAX_ARRAY: usize = 1_000_000;

/// Where a project-environment's Redis is, and its password.
#[derive(Clone, PartialEq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    password: Option<String>,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|_| "<redacted>")
                    .unwrap_or("none"),
            )
            .finish()
    }
}

impl RedisTarget {
    pub fn new(host: impl Into<String>, port: u16, password: Option<Secret>) -> RedisTarget {
        RedisTarget {
            host: host.into(),
            port,
            password: password.map(|p| p.expose().to_string()),
        }
    }

    /// `host:port`, as errors name it.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The Redis a service's env file names (`REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`, as
    /// deploys write them); `None` when the file names no Redis. The monitor runs as root on
    /// the droplet, where these files are (0600): no second copy of the password is needed.
    pub fn from_env_file(path: &Path) -> Result<Option<RedisTarget>, RedisError> {
        let text = std::fs::read_to_string(path).map_err(|e| RedisError::EnvFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut host = None;
        let mut port = None;
        let mut password = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key.trim() {
                "REDIS_HOST" => host = Some(value.to_string()),
                "REDIS_PORT" => port = Some(value.to_string()),
                "REDIS_PASSWORD" => password = Some(value.to_string()),
                _ => {}
            }
        }
        let Some(host) = host else {
            return Ok(None);
        };
        let port = port
            .as_deref()
            .unwrap_or("6379")
            .parse::<u16>()
            .map_err(|_| RedisError::EnvFile {
                path: path.display().to_string(),
                reason: "REDIS_PORT is not a port number; deploy the service again to rewrite it"
                    .into(),
            })?;
        Ok(Some(RedisTarget {
            host,
            port,
            password: password.filter(|p| !p.is_empty()),
        }))
    }

    /// Connects and authenticates (when there is a password).
    pub async fn connect(&self) -> Result<Redis, RedisError> {
        let address = self.address();
        let stream = tokio::time::timeout(
            COMMAND_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| RedisError::Timeout {
            address: address.clone(),
            command: "connect".into(),
        })?
        .map_err(|e| RedisError::Connect {
            address: address.clone(),
            reason: e.to_string(),
        })?;
        stream.set_nodelay(true).ok();
        let mut redis = Redis {
            address,
            stream: BufReader::new(stream),
        };
        if let Some(password) = &self.password {
            match redis.call("AUTH", &[b"AUTH", password.as_bytes()]).await {
                Ok(_) => {}
                Err(RedisError::Server { message, .. })
                    if message.starts_with("WRONGPASS") || message.contains("invalid password") =>
                {
                    return Err(RedisError::Auth {
                        address: redis.address.clone(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(redis)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot reach Redis at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("Redis at {address} refused the password; check <PROJECT>_<ENV>_REDIS_PASSWORD and deploy again so the env files and the server agree")]
    Auth { address: String },
    #[error("Redis at {address} did not answer `{command}` in time")]
    Timeout { address: String, command: String },
    #[error("Redis at {address}: {message}")]
    Server { address: String, message: String },
    #[error("Redis at {address}: {message}")]
    Protocol { address: String, message: String },
    #[error("lost the connection to Redis at {address}: {reason}")]
    Io { address: String, reason: String },
    #[error("cannot read the Redis settings in {path}: {reason}")]
    EnvFile { path: String, reason: String },
}

/// One reply, as RESP2 has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn integer(self, address: &str, command: &str) -> Result<i64, RedisError> {
        match self {
            Reply::Integer(n) => Ok(n),
            other => Err(unexpected(address, command, &other)),
        }
    }
}

fn unexpected(address: &str, command: &str, reply: &Reply) -> RedisError {
    RedisError::Protocol {
        address: address.to_string(),
        message: format!("unexpected answer to `{command}`: {}", describe(reply)),
    }
}

fn describe(reply: &Reply) -> &'static str {
    match reply {
        Reply::Status(_) => "a status",
        Reply::Integer(_) => "a number",
        Reply::Bulk(None) | Reply::Array(None) => "nil",
        Reply::Bulk(Some(_)) => "a string",
        Reply::Array(Some(_)) => "a list",
    }
}

/// Which end of a list (`LMOVE`'s `LEFT`/`RIGHT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl End {
    fn word(self) -> &'static [u8] {
        match self {
            End::Left => b"LEFT",
            End::Right => b"RIGHT",
        }
    }
}

/// What [`Redis::requeue_one`] did with one failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Moved back to the queue; this was its `n`th requeue.
    Moved(u32),
    /// Already requeued `n` times, the limit: it stays in the failed list.
    AtLimit(u32),
    /// No longer in the failed list (another droplet's monitor moved it first).
    Gone,
}

/// Atomically, for job ARGV[1] with limit ARGV[2]: when its count in the hash KEYS[3] is
/// under the limit and it is still in the failed list KEYS[1], take it out (oldest copy), count
/// it and push it onto the queue KEYS[2]. One script, so two monitors (a worker's replicas
/// run on several droplets) never move one job twice nor miscount it.
const REQUEUE_SCRIPT: &str = r#"
local n = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if n >= tonumber(ARGV[2]) then return {0, n} end
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return {-1, n} end
n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('LPUSH', KEYS[2], ARGV[1])
return {1, n}
"#;

/// An open, authenticated connection.
pub struct Redis {
    address: String,
    stream: BufReader<TcpStream>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("address", &self.address)
            .finish()
    }
}

impl Redis {
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends one command (its words) and reads the reply; `name` is what errors call it (never
    /// its arguments, which may be a password or a job).
    pub async fn call(&mut self, name: &str, words: &[&[u8]]) -> Result<Reply, RedisError> {
        let mut frame = format!("*{}\r\n", words.len()).into_bytes();
        for w in words {
            frame.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            frame.extend_from_slice(w);
            frame.extend_from_slice(b"\r\n");
        }
        let address = self.address.clone();
        let io = |e: std::io::Error| RedisError::Io {
            address: address.clone(),
            reason: e.to_string(),
        };
        let exchange = async {
            self.stream.get_mut().write_all(&frame).await.map_err(io)?;
            read_reply(&mut self.stream, &self.address).await
        };
        let reply = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| RedisError::Timeout {
                address: self.address.clone(),
                command: name.to_string(),
            })??;
        Ok(reply)
    }

    pub async fn ping(&mut self) -> Result<(), RedisError> {
        match self.call("PING", &[b"PING"]).await? {
            Reply::Status(s) if s == "PONG" => Ok(()),
            other => Err(unexpected(&self.address, "PING", &other)),
        }
    }

    pub async fn llen(&mut self, list: &str) -> Result<u64, RedisError> {
        let n = self
            .call("LLEN", &[b"LLEN", list.as_bytes()])
            .await?
            .integer(&self.address, "LLEN")?;
        Ok(n.max(0) as u64)
    }

    /// Items `start..=stop` of `list` (negative counts from the end, as Redis does).
    pub async fn lrange(
        &mut self,
        list: &str,
        start: i64,
        stop: i64,
    ) -> Result<Vec<Vec<u8>>, RedisError> {
        let (start, stop) = (start.to_string(), stop.to_string());
        match self
            .call(
                "LRANGE",
                &[
                    b"LRANGE",
                    list.as_bytes(),
                    start.as_bytes(),
                    stop.as_bytes(),
                ],
            )
            .await?
        {
            Reply::Array(Some(items)) => items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(Some(b)) => Ok(b),
                    other => Err(unexpected(&self.address, "LRANGE", &other)),
                })
                .collect(),
            Reply::Array(None) => Ok(Vec::new()),
            other => Err(unexpected(&self.address, "LRANGE", &other)),
        }
    }

    /// Pushes `items` onto the left end; the list's new length.
    pub async fn lpush(&mut self, list: &str, items: &[&[u8]]) -> Result<u64, RedisError> {
        self.push("LPUSH", list, items).await
    }

    /// Pushes `items` onto the right end; the list's new length.
    pub async fn rpush(&mut self, list: &str, items: &[&[u8]]) -> Result<u64, RedisError> {
        self.push("RPUSH", list, items).await
    }

    async fn push(&mut self, verb: &str, list: &str, items: &[&[u8]]) -> Result<u64, RedisError> {
        let mut words: Vec<&[u8]> = vec![verb.as_bytes(), list.as_bytes()];
        words.extend_from_slice(items);
        let n = self
            .call(verb, &words)
            .await?
            .integer(&self.address, verb)?;
        Ok(n.max(0) as u64)
    }

    /// Moves one item from `from`'s `from_end` to `to`'s `to_end`; the item, or `None` when
    /// `from` is empty.
    pub async fn lmove(
        &mut self,
        from: &str,
        to: &str,
        from_end: End,
        to_end: End,
    ) -> Result<Option<Vec<u8>>, RedisError> {
        match self
            .call(
                "LMOVE",
                &[
                    b"LMOVE",
                    from.as_bytes(),
                    to.as_bytes(),
                    from_end.word(),
                    to_end.word(),
                ],
            )
            .await?
        {
            Reply::Bulk(b) => Ok(b),
            other => Err(unexpected(&self.address, "LMOVE", &other)),
        }
    }

    pub async fn hget(&mut self, hash: &str, field: &[u8]) -> Result<Option<i64>, RedisError> {
        match self
            .call("HGET", &[b"HGET", hash.as_bytes(), field])
            .await?
        {
            Reply::Bulk(None) => Ok(None),
            Reply::Bulk(Some(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| RedisError::Protocol {
                    address: self.address.clone(),
                    message: format!("`{hash}` holds a field that is not a number"),
                }),
            other => Err(unexpected(&self.address, "HGET", &other)),
        }
    }

    pub async fn hincrby(&mut self, hash: &str, field: &[u8], by: i64) -> Result<i64, RedisError> {
        let by = by.to_string();
        self.call(
            "HINCRBY",
            &[b"HINCRBY", hash.as_bytes(), field, by.as_bytes()],
        )
        .await?
        .integer(&self.address, "HINCRBY")
    }

    /// Moves `job` from `failed` back onto `queue` (its left end, where producers `LPUSH`)
    /// unless `counts` says it went back `limit` times already; see [`REQUEUE_SCRIPT`].
    pub async fn requeue_one(
        &mut self,
        failed: &str,
        queue: &str,
        counts: &str,
        job: &[u8],
        limit: u32,
    ) -> Result<Requeue, RedisError> {
        let limit = limit.to_string();
        let reply = self
            .call(
                "EVAL (requeue)",
                &[
                    b"EVAL",
                    REQUEUE_SCRIPT.as_bytes(),
                    b"3",
                    failed.as_bytes(),
                    queue.as_bytes(),
                    counts.as_bytes(),
                    job,
                    limit.as_bytes(),
                ],
            )
            .await?;
        let bad = |r: &Reply| unexpected(&self.address, "EVAL (requeue)", r);
        let Reply::Array(Some(parts)) = &reply else {
            return Err(bad(&reply));
        };
        let (Some(Reply::Integer(outcome)), Some(Reply::Integer(n))) =
            (parts.first(), parts.get(1))
        else {
            return Err(bad(&reply));
        };
        let n = (*n).clamp(0, i64::from(u32::MAX)) as u32;
        Ok(match outcome {
            1 => Requeue::Moved(n),
            0 => Requeue::AtLimit(n),
            _ => Requeue::Gone,
        })
    }
}

async fn read_line(stream: &mut BufReader<TcpStream>, address: &str) -> Result<String, RedisError> {
    let mut line = Vec::new();
    let n = stream
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| RedisError::Io {
            address: address.to_string(),
            reason: e.to_string(),
        })?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(RedisError::Io {
            address: address.to_string(),
            reason: "the server closed the connection".into(),
        });
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| RedisError::Protocol {
        address: address.to_string(),
        message: "a reply line is not UTF-8".into(),
    })
}

fn length(text: &str, max: usize, address: &str) -> Result<Option<usize>, RedisError> {
    let n: i64 = text.parse().map_err(|_| RedisError::Protocol {
        address: address.to_string(),
        message: format!("`{text}` is not a length"),
    })?;
    if n < 0 {
        return Ok(None);
    }
    let n = n as usize;
    if n > max {
        return Err(RedisError::Protocol {
            address: address.to_string(),
            message: format!("a reply of {n} items or bytes is more than the monitor takes"),
        });
    }
    Ok(Some(n))
}

/// One reply; arrays are read iteratively (a stack of partly read arrays), so a deeply nested
/// reply cannot overflow the stack.
async fn read_reply(stream: &mut BufReader<TcpStream>, address: &str) -> Result<Reply, RedisError> {
    // (items still to read, items read so far)
    let mut open: Vec<(usize, Vec<Reply>)> = Vec::new();
    loop {
        let line = read_line(stream, address).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let mut value = match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => {
                return Err(RedisError::Server {
                    address: address.to_string(),
                    message: rest.to_string(),
                })
            }
            ":" => Reply::Integer(rest.parse().map_err(|_| RedisError::Protocol {
                address: address.to_string(),
                message: format!("`{rest}` is not a number"),
            })?),
            "$" => match length(rest, MAX_BULK, address)? {
                None => Reply::Bulk(None),
                Some(n) => {
                    let mut data = vec![0u8; n + 2];
                    stream
                        .read_exact(&mut data)
                        .await
                        .map_err(|e| RedisError::Io {
                            address: address.to_string(),
                            reason: e.to_string(),
                        })?;
                    data.truncate(n);
                    Reply::Bulk(Some(data))
                }
            },
            "*" => match length(rest, MAX_ARRAY, address)? {
                None => Reply::Array(None),
                Some(0) => Reply::Array(Some(Vec::new())),
                Some(n) => {
                    open.push((n, Vec::with_capacity(n.min(1024))));
                    continue;
                }
            },
            _ => {
                return Err(RedisError::Protocol {
                    address: address.to_string(),
                    message: "an answer that is not RESP2".into(),
                })
            }
        };
        // Hand the finished value to the array it belongs to, closing every array it fills.
        loop {
            let Some((left, items)) = open.last_mut() else {
                return Ok(value);
            };
            items.push(value);
            *left -= 1;
            if *left > 0 {
                break;
            }
            let (_, items) = open.pop().expect("an open array");
            value = Reply::Array(Some(items));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let target = RedisTarget::new("10.0.0.2", 6400, Some(Secret::new("hunter2-secret")));
        let shown = format!("{target:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(target.address(), "10.0.0.2:6400");
        let error = RedisError::Auth {
            address: target.address(),
        };
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn an_env_file_names_the_redis_of_its_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop-prod-jobs.env");
        std::fs::write(
            &path,
            "# shop-prod-jobs\nA=1\nREDIS_HOST=10.0.0.2\nREDIS_PORT=6512\nREDIS_PASSWORD=pa=ss\n",
        )
        .unwrap();
        let target = RedisTarget::from_env_file(&path).unwrap().unwrap();
        assert_eq!((target.host.as_str(), target.port), ("10.0.0.2", 6512));
        assert_eq!(target.password.as_deref(), Some("pa=ss"));
        std::fs::write(&path, "A=1\n").unwrap();
        assert_eq!(RedisTarget::from_env_file(&path).unwrap(), None);
        std::fs::write(&path, "REDIS_HOST=h\nREDIS_PORT=x\n").unwrap();
        let e = RedisTarget::from_env_file(&path).unwrap_err().to_string();
        assert!(e.contains("REDIS_PORT is not a port number"), "{e}");
    }
}
