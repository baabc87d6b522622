//! A TCP proxy in front of the local S3 server that SIGKILLs a sealfs daemon when it sees a
//! given request go by, before forwarding it: a crash at an exact point of a write, a copy or
//! a rename, as the OOM killer or a reboot would cause it at a random one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{rt, server_endpoint, tls::socket_of};

struct Trigger {
    pattern: Vec<u8>,
    /// Kill at this occurrence (1: the first).
    nth: usize,
    seen: usize,
    mountpoint: PathBuf,
}

#[derive(Default)]
struct State {
    trigger: Option<Trigger>,
    /// The first line of every request seen, for assertion messages.
    requests: Vec<String>,
}

pub struct Tripwire {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    fired: Arc<AtomicBool>,
}

/// SIGKILL the sealfs daemon serving `mountpoint` (found by its command line).
fn kill_daemon(mountpoint: &Path) -> bool {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    let mut killed = false;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&b"mount".as_slice()) && args.contains(&want) {
            // SAFETY: kill(2) with a pid read from /proc; no memory is involved.
            killed |= unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
        }
    }
    killed
}

/// Count the occurrences of `pattern` that end inside `window[from..]`.
fn hits(window: &[u8], from: usize, pattern: &[u8]) -> usize {
    (window.windows(pattern.len()).enumerate())
        .filter(|(i, w)| *w == pattern && i + pattern.len() > from)
        .count()
}

impl Tripwire {
    pub fn start() -> Tripwire {
        let upstream = socket_of(&server_endpoint());
        let listener = rt()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let fired = Arc::new(AtomicBool::new(false));
        let (st, fi) = (state.clone(), fired.clone());
        rt().spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (st, fi) = (st.clone(), fi.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if fi.load(Ordering::SeqCst) {
                            break; // after the kill, nothing more reaches the server
                        }
                        let kill = {
                            let mut s = st.lock().unwrap();
                            let line = chunk.split(|b| *b == b'\r').next().unwrap_or(b"");
                            if line.len() < 2048
                                && line.contains(&b' ')
                                && line.ends_with(b"HTTP/1.1")
                            {
                                s.requests.push(String::from_utf8_lossy(line).into_owned());
                            }
                            let mut window = std::mem::take(&mut tail);
                            let from = window.len();
                            window.extend_from_slice(chunk);
                            let mut kill = None;
                            if let Some(t) = s.trigger.as_mut() {
                                t.seen += hits(&window, from, &t.pattern);
                                if t.seen >= t.nth {
                                    kill = Some(t.mountpoint.clone());
                                }
                                let keep = t.pattern.len().saturating_sub(1).min(window.len());
                                tail = window[window.len() - keep..].to_vec();
                            }
                            if kill.is_some() {
                                s.trigger = None;
                            }
                            kill
                        };
                        if let Some(mountpoint) = kill {
                            // Fired before the kill: the test wakes up (its syscall fails with
                            // ENOTCONN) as soon as the daemon dies, and then asks.
                            fi.store(true, Ordering::SeqCst);
                            assert!(kill_daemon(&mountpoint), "no daemon for {mountpoint:?}");
                            break; // the request that tripped the wire is never sent
                        }
                        if sw.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    back.abort();
                });
            }
        });
        Tripwire { addr, state, fired }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kill the daemon of `mountpoint` at the `nth` request holding `pattern`.
    pub fn arm(&self, pattern: &str, nth: usize, mountpoint: &Path) {
        self.state.lock().unwrap().trigger = Some(Trigger {
            pattern: pattern.as_bytes().to_vec(),
            nth,
            seen: 0,
            mountpoint: mountpoint.to_path_buf(),
        });
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// The request lines seen so far (for messages).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}
