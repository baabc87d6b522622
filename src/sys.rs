//! Thin wrappers over the few process-level system calls sealfs needs (daemonizing, stdio
//! redirection, keeping keys and plaintext out of core dumps); the only module that calls into
//! libc for them.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};

/// Result of `daemonize` in the process that continues.
pub struct Daemon {
    ready: File,
}

impl Daemon {
    /// Tell the waiting parent that the mount is up (it exits 0) or why it is not (it prints
    /// the message and exits 1).
    pub fn report(mut self, result: Result<(), String>) {
        let msg = match result {
            Ok(()) => "OK\n".to_string(),
            Err(e) => format!("ERR {e}\n"),
        };
        let _ = self.ready.write_all(msg.as_bytes());
    }
}

/// Fork into the background. The parent waits until the child reports, then exits with the
/// child's verdict; it never returns. Must run before any thread is started.
pub fn daemonize() -> std::io::Result<Daemon> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array we own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: single-threaded at this point (checked by the caller's contract).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        // SAFETY: fds[0] is ours; fds[1] belongs to the child now.
        unsafe { libc::close(fds[1]) };
        let mut r = unsafe { File::from_raw_fd(fds[0]) };
        let mut msg = String::new();
        let _ = r.read_to_string(&mut msg);
        if msg.starts_with("OK") {
            std::process::exit(0);
        }
        let msg = msg.strip_prefix("ERR ").unwrap_or(&msg).trim();
        if msg.is_empty() {
            eprintln!("sealfs: the mount process exited before the mount was ready");
        } else {
            eprintln!("sealfs: {msg}");
        }
        std::process::exit(1);
    }
    // SAFETY: the child owns fds[1]; setsid detaches it from the terminal's session.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    Ok(Daemon {
        ready: unsafe { File::from_raw_fd(fds[1]) },
    })
}

/// Point stdin/stdout at /dev/null and stderr at `log` (or /dev/null), as a daemon should.
pub fn detach_stdio(log: Option<&File>) -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let err_fd = log.map_or(null.as_raw_fd(), |f| f.as_raw_fd());
    // SAFETY: dup2 onto the standard descriptors with fds that are open.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(err_fd, 2);
    }
    Ok(())
}

/// Keep this process's memory (keys, the block cache's plaintext) out of core dumps: core
/// size 0, and not dumpable (which also keeps other processes of the same user from reading
/// its memory through ptrace or /proc/PID/mem).
pub fn no_core_dumps() -> std::io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we own; prctl takes plain integers.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_CORE, &zero) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Open (append, create) a log file readable by its owner only: a log names files, and with
/// encrypted names those names are what the bucket does not see. An existing file is made
/// private too.
pub fn private_log(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// The effective user and group of this process (defaults for files without owners).
pub fn ids() -> (u32, u32) {
    // SAFETY: these calls cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Whether `path` is already a mount point (mounting over it again would hide it).
pub fn is_mount_point(path: &std::path::Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

/// The device (`MAJ:MIN`) of the newest mount at `canon`, a canonical path taken before
/// mounting there (resolving it afterwards would ask the mount itself, which may not serve
/// yet).
pub fn mount_device(canon: &std::path::Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        let dev = f.nth(2)?;
        (f.nth(1)? == want).then(|| dev.to_string())
    })
}

/// Set the kernel's readahead for device `dev` (`MAJ:MIN`), KiB. Root only (sysfs).
pub fn set_read_ahead(dev: &str, kib: u32) -> std::io::Result<()> {
    std::fs::write(
        format!("/sys/class/bdi/{dev}/read_ahead_kb"),
        kib.to_string(),
    )
}

/// Unmount the filesystem at `path`: umount(2) as root, else the setuid `fusermount3 -u`
/// (as libfuse does for users).
pub fn unmount(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(err);
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(path)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "fusermount3 -u failed: {status}"
        )))
    }
}

/// `N` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut aes_gcm::aead::OsRng, &mut b);
    b
}

/// `N` random bytes from the OS, in hex: names of scratch objects and sessions, where two
/// mounts must never pick the same one.
pub fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}

/// Take an exclusive `flock` on `file` without waiting: `Ok(false)` when another open file
/// description holds it. The kernel drops the lock when the process dies, so a crashed
/// holder never leaves it taken.
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

/// Size and space available to unprivileged users of the file system holding `path`, bytes.
pub fn fs_space(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is valid for writes.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
}

/// Free the bytes `offset..offset + len` of `file` (they read as zeros afterwards) without
/// changing its length. Where the file system cannot punch holes, the range is overwritten with
/// zeros instead: it reads the same, but keeps its disk space.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: the descriptor is open for the duration of the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            let end = file.metadata()?.len().min(offset + len);
            let zeros = vec![0u8; end.saturating_sub(offset) as usize];
            file.write_all_at(&zeros, offset)
        }
        _ => Err(e),
    }
}

/// Read from `offset` of `file` into all of `head`, then on into the spare capacity of `body`
/// (appending to it), in one `preadv` unless the kernel returns less. So a disk-cache entry's
/// small header lands on the stack and its body straight in the buffer that will keep it,
/// never zeroed or copied first. Returns the bytes read: fewer than asked only at the end of
/// the file.
pub fn read_split_at(
    file: &File,
    offset: u64,
    head: &mut [u8],
    body: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let start = body.len();
    let want = head.len() + body.spare_capacity_mut().len();
    let mut done = 0;
    while done < want {
        let in_head = done.min(head.len());
        let in_body = done - in_head;
        let spare = &mut body.spare_capacity_mut()[in_body..];
        let iov = [
            libc::iovec {
                iov_base: head[in_head..].as_mut_ptr().cast(),
                iov_len: head.len() - in_head,
            },
            libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: spare.len(),
            },
        ];
        let at = (offset + done as u64) as libc::off_t;
        // SAFETY: the descriptor is open, and each iovec covers memory valid for writes of its
        // length (uninitialized memory is fine: the kernel only writes to it).
        let n =
            interrupted_again(|| unsafe { libc::preadv(file.as_raw_fd(), iov.as_ptr(), 2, at) })?;
        if n == 0 {
            break;
        }
        done += n;
    }
    // SAFETY: preadv wrote the first `done - head.len()` bytes of the spare capacity (when it
    // got past `head`), and `want` bounds them by the capacity.
    unsafe { body.set_len(start + done.saturating_sub(head.len())) };
    Ok(done)
}

/// Write `head` and then `body` at `offset` of `file`, in one `pwritev` unless the kernel takes
/// less: a disk-cache entry's header and the block it keeps go to the file without first being
/// joined in a buffer of their own (a copy of every block a cold read caches).
pub fn write_split_at(file: &File, offset: u64, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let want = head.len() + body.len();
    let mut done = 0;
    while done < want {
        let in_head = done.min(head.len());
        let in_body = done - in_head;
        let iov = [
            libc::iovec {
                iov_base: head[in_head..].as_ptr().cast_mut().cast(),
                iov_len: head.len() - in_head,
            },
            libc::iovec {
                iov_base: body[in_body..].as_ptr().cast_mut().cast(),
                iov_len: body.len() - in_body,
            },
        ];
        let at = (offset + done as u64) as libc::off_t;
        // SAFETY: the descriptor is open, and each iovec covers memory valid for reads of its
        // length (pwritev only reads from it).
        let n =
            interrupted_again(|| unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), 2, at) })?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// The bytes a `preadv`/`pwritev` moved, calling it again when a signal interrupted it (which
/// moves nothing).
fn interrupted_again(mut call: impl FnMut() -> libc::ssize_t) -> std::io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Where the next bytes of `file` that are not a hole start, at or after `offset`; `None` when
/// only holes follow. A file system that does not track holes reports every byte as data.
pub fn next_data(file: &File, offset: u64) -> std::io::Result<Option<u64>> {
    seek(file, offset, libc::SEEK_DATA)
}

/// Where the next hole of `file` starts at or after `offset` (its end counts as one).
pub fn next_hole(file: &File, offset: u64) -> std::io::Result<u64> {
    Ok(seek(file, offset, libc::SEEK_HOLE)?.unwrap_or(offset))
}

fn seek(file: &File, offset: u64, whence: i32) -> std::io::Result<Option<u64>> {
    // SAFETY: the descriptor is open for the duration of the call.
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset as i64, whence) };
    if at >= 0 {
        return Ok(Some(at as u64));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(e),
    }
}

/// This machine's host name (for names that say where something came from), "host" if unknown.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the kernel NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "host".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn holes_are_found_and_punched() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        f.write_all_at(&[7u8; 300_000], 1 << 20).unwrap();
        let len = (1 << 20) + 300_000;
        // The first MiB was never written: a hole, as far as the file system tracks them.
        let data = next_data(&f, 0).unwrap().unwrap();
        assert!(data > 0 && data <= 1 << 20, "{data}");
        assert!(next_hole(&f, data).unwrap() >= len - 4096);
        assert_eq!(next_data(&f, len + 1).unwrap(), None);
        punch_hole(&f, 1 << 20, 8192).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len() as u64, len, "the length is kept");
        assert!(raw[1 << 20..(1 << 20) + 8192].iter().all(|&b| b == 0));
        assert_eq!(raw[(1 << 20) + 8192], 7);
        assert!(next_data(&f, 0).unwrap().unwrap() >= (1 << 20) + 8192);
    }

    #[test]
    fn a_split_read_fills_the_head_then_appends_to_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        // Within the file: the head, then exactly the body's spare capacity.
        let (mut head, mut body) = ([0u8; 46], Vec::with_capacity(5_000));
        body.push(9);
        let cap = body.capacity();
        assert_eq!(
            read_split_at(&f, 100, &mut head, &mut body).unwrap(),
            46 + cap - 1
        );
        assert_eq!(&head[..], &bytes[100..146]);
        assert_eq!(body[0], 9, "appended after what the body held");
        assert_eq!(&body[1..], &bytes[146..146 + cap - 1]);
        // Past the end: fewer bytes, and the body holds only what was read.
        let (mut head, mut body) = ([0u8; 46], Vec::with_capacity(5_000));
        assert_eq!(
            read_split_at(&f, 9_000, &mut head, &mut body).unwrap(),
            1_000
        );
        assert_eq!(
            (&head[..], &body[..]),
            (&bytes[9_000..9_046], &bytes[9_046..])
        );
        // Ending inside the head: the body stays empty.
        let (mut head, mut body) = ([0u8; 46], Vec::with_capacity(64));
        assert_eq!(read_split_at(&f, 9_990, &mut head, &mut body).unwrap(), 10);
        assert_eq!((&head[..10], body.len()), (&bytes[9_990..], 0));
    }

    #[test]
    fn a_split_write_puts_the_head_then_the_body_at_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [5u8; 200]).unwrap();
        let f = File::options().write(true).open(&path).unwrap();
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        write_split_at(&f, 100, &[1, 2, 3], &body).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 100 + 3 + body.len());
        assert_eq!(
            &raw[..100],
            &[5u8; 100][..],
            "what precedes the offset is kept"
        );
        assert_eq!(&raw[100..103], &[1, 2, 3]);
        assert_eq!(&raw[103..], &body[..]);
        // An empty body: the head alone.
        write_split_at(&f, 0, &[9; 4], &[]).unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[..5], &[9, 9, 9, 9, 5]);
    }

    #[test]
    fn the_process_stops_being_dumpable_and_logs_are_private() {
        no_core_dumps().unwrap();
        // SAFETY: plain queries of this process's settings.
        let (dumpable, core) = unsafe {
            let mut lim = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut lim);
            (libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0), lim.rlim_max)
        };
        assert_eq!((dumpable, core), (0, 0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_log(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        private_log(&dir.path().join("new")).unwrap();
        let mode = std::fs::metadata(dir.path().join("new"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
