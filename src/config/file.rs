//! Reading the agent's files (config, secrets, CA, TLS certificate and key): the one place that
//! opens them. Each read refuses anything but a regular file (a FIFO would block, `/dev/zero`
//! never ends) and anything over a size cap, so no file can hang or bloat the process.
//!
//! Symlinks to regular files are followed (Kubernetes mounts secrets as `..data` symlinks). It
//! only reads bytes; what they mean is the caller's business.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The config file: a few thousand orgs fit in well under a megabyte.
pub const CONFIG_CAP: u64 = 4 * 1024 * 1024;
/// A client secret file: OBF secrets are tens of bytes.
pub const SECRET_CAP: u64 = 4 * 1024;
/// A PEM file (CA bundle, TLS certificate chain or key): the system CA bundle is ~220 KB.
pub const PEM_CAP: u64 = 1024 * 1024;

/// Why a file could not be read. The path is not part of the message: the caller decides how
/// to show it (a secret file's "path" may be a pasted secret).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is larger than {}", Bytes(*.0))]
    TooLarge(u64),
}

impl FileError {
    /// One line about `what` (e.g. `secret file "/run/secrets/acme"`).
    pub fn describe(&self, what: &str) -> String {
        match self {
            FileError::Io(error) => format!("cannot read {what}: {error}"),
            other => format!("{what} {other}"),
        }
    }
}

/// Reads the whole regular file at `path` if it holds at most `cap` bytes.
///
/// The file is opened with `O_NONBLOCK`, so even a FIFO swapped in after the first check cannot
/// block the open, and `O_NOCTTY`, so a terminal never becomes ours. Its type is checked on the
/// path before opening (opening some devices has side effects) and on the opened descriptor
/// after (the path may have changed in between). The size is checked from the metadata and
/// again while reading, by reading at most `cap + 1` bytes: a file may grow, and `/proc` files
/// report a size of 0.
pub fn read(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    check(&std::fs::metadata(path).map_err(FileError::Io)?, cap)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(FileError::Io)?;
    let metadata = file.metadata().map_err(FileError::Io)?;
    check(&metadata, cap)?;
    read_at_most(file, metadata.len(), cap)
}

/// Like [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, cap: u64) -> Result<String, FileError> {
    let bytes = read(path, cap)?;
    String::from_utf8(bytes).map_err(|_| {
        FileError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

fn check(metadata: &Metadata, cap: u64) -> Result<(), FileError> {
    let kind = metadata.file_type();
    if !kind.is_file() {
        let name = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(FileError::NotRegular(name));
    }
    if metadata.len() > cap {
        return Err(FileError::TooLarge(cap));
    }
    Ok(())
}

fn read_at_most(file: File, expected: u64, cap: u64) -> Result<Vec<u8>, FileError> {
    // `expected` is at most `cap` here, and caps are at most a few MiB.
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(FileError::TooLarge(cap));
    }
    Ok(bytes)
}

/// A byte count as the caps are written: `4 KiB`, `1 MiB`, else bytes.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * 1024;
        match self.0 {
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// For a relative `path`, a note saying what it is relative to: the process's working
/// directory, not the config file's directory (a common surprise). Empty for an absolute path.
/// Only the directory is shown, never the path itself (a secret file's "path" may be a pasted
/// secret; the caller decides whether to show it).
pub fn relative_note(path: &Path) -> String {
    if path.is_absolute() {
        return String::new();
    }
    match std::env::current_dir() {
        Ok(dir) => format!(" (relative to the working directory {})", dir.display()),
        Err(error) => format!(" (relative to the working directory, which is unknown: {error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn relative_paths_name_the_working_directory() {
        assert_eq!(relative_note(Path::new("/run/secrets/acme")), "");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            relative_note(Path::new("secrets/acme")),
            format!(" (relative to the working directory {})", cwd.display())
        );
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "obf-exporter-file-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn a_regular_file_within_the_cap_is_read_whole() {
        let dir = scratch("ok");
        let path = dir.join("f");
        std::fs::write(&path, b"abcd").unwrap();
        assert_eq!(read(&path, 4).unwrap(), b"abcd");
        assert_eq!(read_to_string(&path, 4).unwrap(), "abcd");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_the_cap_in_the_message() {
        let dir = scratch("big");
        let path = dir.join("f");
        std::fs::write(&path, vec![b'x'; 4097]).unwrap();
        let error = read(&path, SECRET_CAP).unwrap_err();
        assert_eq!(error.to_string(), "is larger than 4 KiB");
        assert_eq!(
            error.describe("secret file \"/x\""),
            "secret file \"/x\" is larger than 4 KiB"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn special_files_are_refused_by_kind_without_blocking() {
        let dir = scratch("kinds");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        assert_eq!(
            read(&fifo, SECRET_CAP).unwrap_err().to_string(),
            "is a FIFO, not a regular file"
        );
        assert_eq!(
            read(Path::new("/dev/zero"), SECRET_CAP)
                .unwrap_err()
                .to_string(),
            "is a character device, not a regular file"
        );
        assert_eq!(
            read(&dir, SECRET_CAP).unwrap_err().to_string(),
            "is a directory, not a regular file"
        );
        let socket = dir.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert_eq!(
            read(&socket, SECRET_CAP).unwrap_err().to_string(),
            "is a socket, not a regular file"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_symlink_to_a_regular_file_is_followed_but_not_one_to_a_fifo() {
        let dir = scratch("links");
        let target = dir.join("target");
        std::fs::write(&target, b"s3cret").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read(&link, SECRET_CAP).unwrap(), b"s3cret");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        let to_fifo = dir.join("to-fifo");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        assert!(matches!(
            read(&to_fifo, SECRET_CAP),
            Err(FileError::NotRegular("a FIFO"))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_whose_size_lies_is_cut_at_the_cap() {
        // /proc files report a size of 0 and hold more.
        let path = Path::new("/proc/self/status");
        if path.exists() {
            assert!(matches!(read(path, 16), Err(FileError::TooLarge(16))));
        }
    }

    #[test]
    fn a_missing_file_names_the_os_error() {
        let error = read(Path::new("/nonexistent/secret"), SECRET_CAP).unwrap_err();
        assert!(error
            .describe("\"/nonexistent/secret\"")
            .starts_with("cannot read \"/nonexistent/secret\": No such file"));
    }

    #[test]
    fn caps_print_in_binary_units() {
        assert_eq!(Bytes(SECRET_CAP).to_string(), "4 KiB");
        assert_eq!(Bytes(PEM_CAP).to_string(), "1 MiB");
        assert_eq!(Bytes(CONFIG_CAP).to_string(), "4 MiB");
        assert_eq!(Bytes(16).to_string(), "16 bytes");
    }
}
