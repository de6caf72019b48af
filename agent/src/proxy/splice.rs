//! Copying a proxied connection's bytes with splice(2): from one socket
//! into a pipe and from the pipe into the other socket, so that the bytes
//! stay in the kernel instead of being copied into the proxy and back.
//!
//! The system calls (pipe2, fcntl, splice, shutdown) are made through libc,
//! each on descriptors this module holds open for the call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most bytes one splice moves, and the pipe's size.
const CHUNK_BYTES: usize = 1 << 20;

/// A pipe of [`CHUNK_BYTES`] (as far as the system allows), both ends non-blocking.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by us.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A bigger pipe moves more per call; the default (64 KiB) still works.
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
    unsafe {
        libc::fcntl(
            write.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            CHUNK_BYTES as libc::c_int,
        )
    };
    Ok((read, write))
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null
    // offsets mean "the file position", as pipes and sockets require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves bytes from `from` to `to` until `from` ends, then shuts down
/// `to`'s sending side; returns the bytes moved.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_read, pipe_write) = pipe()?;
    let mut total = 0u64;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe_write.as_raw_fd(), CHUNK_BYTES)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // SAFETY: shutdown on a socket descriptor `to` keeps open.
            unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe_read.as_raw_fd(), to.as_raw_fd(), left)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

/// Moves bytes both ways between `a` and `b` until both directions have
/// ended (or one fails); returns the bytes moved from `a` to `b` and back.
pub async fn both_ways(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b), one_way(b, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A client, a proxy splicing to a server that echoes, and back: every
    /// byte of a transfer larger than the pipe arrives in order, and each
    /// side's end reaches the other.
    #[tokio::test]
    async fn bytes_go_both_ways_in_order_and_ends_pass_through() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let proxy = tokio::spawn(async move {
            let (client, _) = front.accept().await.unwrap();
            let upstream = TcpStream::connect(server_addr).await.unwrap();
            both_ways(&client, &upstream).await.unwrap()
        });
        let data: Vec<u8> = (0..3 * CHUNK_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        let (mut r, mut w) = c.split();
        let send = async {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = r.read_to_end(&mut back);
        let ((), got) = tokio::join!(send, recv);
        got.unwrap();
        assert!(back == data, "{} bytes back of {}", back.len(), data.len());
        let (up, down) = proxy.await.unwrap();
        assert_eq!((up, down), (data.len() as u64, data.len() as u64));
    }
}
