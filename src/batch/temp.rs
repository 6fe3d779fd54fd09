//! Who wrote a temporary file: the host and process id in the names of
//! [`crate::io::write_atomic`]'s temporaries (`.NAME.cyclegan-HOST-PID-XXXXXXXX.tmp`).
//!
//! Many tasks on many hosts write into one output folder on shared storage. A process id
//! alone says nothing about a file written on another host, so a temporary is provably
//! stale only when it carries this host's name and a process id that is not alive here;
//! everything else (other hosts, names of older versions without a host) is left alone.

use std::sync::OnceLock;

/// This machine's short host name, reduced to `[A-Za-z0-9_-]` so it is safe in a file
/// name and cannot contain the `.cyclegan-` marker; "unknown-host" when it cannot be read.
pub fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = read_host_name().unwrap_or_default();
        let short = raw.trim().split('.').next().unwrap_or("");
        let clean: String = short
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean.is_empty() {
            "unknown-host".to_owned()
        } else {
            clean
        }
    })
}

fn read_host_name() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; gethostname writes at
        // most that many and we stop at the first NUL (or the end of the buffer).
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
    }
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
}

/// `HOST-PID` of this process: the part of a temporary's name that says who wrote it.
pub fn writer_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("{}-{}", host_name(), std::process::id()))
}

/// For the part of a temporary's name after the marker (`HOST-PID-XXXXXXXX`), the writer's
/// process id when HOST is this machine; `None` for another host's temporary, an older
/// name without a host, or anything malformed, which callers must then leave alone.
pub fn own_host_writer(tail: &str) -> Option<u32> {
    let (rest, hex) = tail.rsplit_once('-')?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (host, pid) = rest.rsplit_once('-')?;
    if host != host_name() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_only_for_this_host() {
        let me = host_name();
        assert!(!me.is_empty() && !me.contains('.'));
        assert_eq!(own_host_writer(&format!("{me}-42-0123abcd")), Some(42));
        assert_eq!(
            own_host_writer(&format!("{}-0123abcd", writer_tag())),
            Some(std::process::id())
        );
        // Another host, even one whose name starts with ours or ends like ours.
        assert_eq!(own_host_writer(&format!("{me}x-42-0123abcd")), None);
        assert_eq!(own_host_writer(&format!("x{me}-42-0123abcd")), None);
        assert_eq!(own_host_writer(&format!("{me}-1-42-0123abcd")), None);
        // Older names without a host, malformed ones.
        assert_eq!(own_host_writer("42-0123abcd"), None);
        assert_eq!(own_host_writer(&format!("{me}-42-0123abcz")), None);
        assert_eq!(own_host_writer(&format!("{me}--0123abcd")), None);
        assert_eq!(own_host_writer(&format!("{me}-4x2-0123abcd")), None);
    }
}
