//! Typed messages over SOCK_SEQPACKET unix sockets (one message per packet, so no framing), and
//! descriptor passing with SCM_RIGHTS. Used between the runtime and a container's init, between
//! `start` and a waiting init, and for the console socket.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Context, Error, Result};

/// The largest message accepted; messages are small JSON documents (the largest, the OCI state
/// sent for hooks, carries the container's annotations).
const MAX_MESSAGE: usize = 1024 * 1024;

/// A connected pair of SOCK_SEQPACKET sockets, both close-on-exec.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .with(|| "socketpair(AF_UNIX, SOCK_SEQPACKET)".to_string())
}

/// Sends one message.
pub fn send<T: Serialize>(fd: &impl AsRawFd, message: &T) -> Result<()> {
    let bytes = serde_json::to_vec(message).map_err(|e| Error::Step {
        step: "encode message".into(),
        message: e.to_string(),
    })?;
    loop {
        match sendmsg::<()>(
            fd.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).with(|| "send message".to_string()),
        }
    }
}

/// Receives one message; `None` when the peer has closed its end (or exec'd, since our sockets are
/// close-on-exec). Only for SOCK_SEQPACKET sockets, whose messages keep their boundaries.
///
/// The message's length is peeked first (`MSG_PEEK | MSG_TRUNC` returns the whole record's
/// length) and a buffer of exactly that size receives it: a 64 KiB buffer per message, zeroed,
/// cost 16 page faults each time on the start path, where a fault costs microseconds.
pub fn recv<T: DeserializeOwned>(fd: &impl AsRawFd) -> Result<Option<T>> {
    let peeked = loop {
        // SAFETY: a zero-length receive into a null buffer writes nothing; with MSG_TRUNC the
        // kernel returns the record's full length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_PEEK | libc::MSG_TRUNC,
            )
        };
        match Errno::result(n) {
            Ok(n) => break n as usize,
            Err(Errno::EINTR) => continue,
            // The peer died: treat like a close.
            Err(Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(e).with(|| "receive message".to_string()),
        }
    };
    if peeked == 0 {
        return Ok(None);
    }
    if peeked > MAX_MESSAGE {
        return Err(Error::Step {
            step: "receive message".into(),
            message: format!("a message of {peeked} bytes (at most {MAX_MESSAGE} are expected)"),
        });
    }
    let mut buf = vec![0u8; peeked];
    let len = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(fd.as_raw_fd(), &mut iov, None, MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => break msg.bytes,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(e).with(|| "receive message".to_string()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&buf[..len])
        .map(Some)
        .map_err(|e| Error::Step {
            step: "decode message".into(),
            message: e.to_string(),
        })
}

/// Sends `fd` over `socket` with SCM_RIGHTS, with `name` as the message body (runc sends the pty
/// master this way; callers such as containerd read the body as the file's name).
pub fn send_fd(socket: RawFd, name: &str, fd: RawFd) -> Result<()> {
    let fds = [fd];
    let body = if name.is_empty() { "fd" } else { name };
    sendmsg::<()>(
        socket,
        &[IoSlice::new(body.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with(|| "send descriptor over the console socket".to_string())?;
    Ok(())
}

/// Receives one descriptor sent with SCM_RIGHTS.
pub fn recv_fd(socket: RawFd) -> Result<Option<OwnedFd>> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .with(|| "receive descriptor".to_string())?;
    for cmsg in msg.cmsgs().with(|| "read control message".to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel installed this fd in our table for us; we take ownership.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok(None)
}
