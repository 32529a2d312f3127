//! The byte-stream I/O shared by `TcpStream` and `UnixStream`.

use std::future::{Future, poll_fn};
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use socket2::SockRef;

use crate::buf::{BufResult, IoBuf, IoBufMut, Slice};
use crate::driver::DriverCell;
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Op, WriteAtOnce};
use crate::op::msg::{RecvMsg, SendMsg};
use crate::op::pooled::poll_queued_into;
use crate::op::rw::{Recv, Send, Source, send_at_once};

/// A connected stream socket, or a pipe.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) fd: SharedFd,
    /// A pipe (`read(2)` and `write(2)`), not a socket.
    pipe: bool,
}

impl Drop for Stream {
    /// A zero-copy write whose future was dropped may still pin its pages in the kernel until
    /// the peer takes the bytes, and a peer that stopped reading never does: the op would keep
    /// the socket open and its megabytes queued for good. Dropping the stream then resets the
    /// connection, so the kernel lets go of them (the dropped write's bytes were not all
    /// delivered anyway).
    fn drop(&mut self) {
        if self.fd.zero_copy_in_flight() > 0 {
            self.fd.abort_connection();
        }
    }
}

impl Stream {
    /// The fd, taken out without the drop's reset (`into_std`: the user keeps the socket).
    pub(crate) fn into_fd(self) -> SharedFd {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the fd is moved out exactly once;
        // the other field is a `bool`.
        unsafe { std::ptr::read(&this.fd) }
    }

    /// A stream socket on which a short read does not prove the socket empty (a Unix stream
    /// read stops after a segment that carried `SCM_RIGHTS`, and at a change of writer with
    /// `SO_PASSCRED`): on epoll only `EAGAIN` marks it drained.
    pub(crate) fn new(fd: SharedFd) -> Self {
        Stream { fd, pipe: false }
    }

    /// A TCP stream: a short read proves the socket empty except at the urgent mark, which the
    /// epoll driver notices (`EPOLLPRI`) and then stops trusting short reads on the socket.
    pub(crate) fn tcp(fd: SharedFd) -> Self {
        fd.trust_short_reads();
        fd.allow_zero_copy();
        Stream { fd, pipe: false }
    }

    /// A pipe end (a child process's stdio), with the same I/O as a stream socket. A read from
    /// a pipe (not in packet mode, which ours never are) is short only when it emptied the pipe.
    pub(crate) fn pipe(fd: SharedFd) -> Self {
        fd.trust_short_reads();
        Stream { fd, pipe: true }
    }

    /// Bytes a dropped read received, into `buf` (up to its capacity), or the error it met;
    /// `None` if there are none.
    fn take_stashed_into<B: IoBufMut>(&self, buf: &mut B) -> Option<io::Result<usize>> {
        if !self.fd.has_stash() {
            return None;
        }
        let cap = buf.bytes_total();
        // SAFETY: the buffer is writable for `bytes_total` bytes.
        let res = unsafe { self.fd.take_stash(buf.stable_mut_ptr(), cap) }?;
        if let Ok(n) = res {
            // SAFETY: `take_stash` initialised the first `n <= cap` bytes.
            unsafe { buf.set_init(n) };
        }
        Some(res)
    }

    /// What pooled receives delivered and nobody took yet, into `buf`; `None` if no pooled
    /// receive is in play (waits while one is armed and nothing came yet).
    async fn take_queued_into<B: IoBufMut>(&self, buf: &mut B) -> Option<io::Result<usize>> {
        let cap = buf.bytes_total();
        let ptr = buf.stable_mut_ptr();
        // SAFETY: the buffer is writable for `bytes_total` bytes and stays put while borrowed.
        let res = poll_fn(|cx| unsafe { poll_queued_into(&self.fd, cx, ptr, cap) }).await;
        if let Some(Ok(n)) = res {
            // SAFETY: `poll_queued_into` initialised the first `n <= cap` bytes.
            unsafe { buf.set_init(n) };
        }
        res
    }

    pub(crate) async fn read<B: IoBufMut>(&self, mut buf: B) -> BufResult<usize, B> {
        self.fd.settled(Interest::Read).await;
        if let Some(res) = self.take_stashed_into(&mut buf) {
            return (res, buf);
        }
        if let Some(res) = self.take_queued_into(&mut buf).await {
            return (res, buf);
        }
        let source = if self.pipe {
            Source::Pipe
        } else {
            Source::Stream
        };
        Op::new(Recv::new(self.fd.clone(), buf, source)).await
    }

    pub(crate) fn recv_pooled(&self) -> crate::op::pooled::RecvPooled<'_> {
        crate::op::pooled::RecvPooled::new(&self.fd)
    }

    pub(crate) async fn recv_pooled_many(
        &self,
        out: &mut Vec<crate::buf::PooledBuf>,
    ) -> std::io::Result<usize> {
        crate::op::pooled::recv_many(&self.fd, out).await
    }

    pub(crate) async fn readv<B: IoBufMut>(&self, mut bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.fd.settled(Interest::Read).await;
        // What a dropped read left, or pooled receives delivered, goes into the first buffer
        // with room (as the kernel fills buffers): an empty first buffer must not make it Ok(0).
        if let Some(at) = bufs.iter().position(|b| b.bytes_total() > 0) {
            let res = match self.take_stashed_into(&mut bufs[at]) {
                Some(res) => Some(res),
                None => self.take_queued_into(&mut bufs[at]).await,
            };
            if let Some(res) = res {
                for (i, b) in bufs.iter_mut().enumerate() {
                    if i != at || res.is_err() {
                        // SAFETY: zero bytes are always initialised.
                        unsafe { b.set_init(0) };
                    }
                }
                return (res, bufs);
            }
        }
        let (res, bufs) = Op::new(RecvMsg::new(self.fd.clone(), bufs, true)).await;
        (res.map(|(n, _)| n), bufs)
    }

    pub(crate) async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.fd.settled(Interest::Write).await;
        Op::new(Send::new(self.fd.clone(), buf, self.pipe)).await
    }

    pub(crate) async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.fd.settled(Interest::Write).await;
        Op::new(SendMsg::new(self.fd.clone(), bufs, None)).await
    }

    pub(crate) fn write_all<B: IoBuf>(&self, buf: B) -> WriteAll<'_, B> {
        WriteAll {
            fd: &self.fd,
            pipe: self.pipe,
            state: WriteAllState::Idle(Some(buf)),
            written: 0,
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.fd).shutdown(how)
    }
}

enum WriteAllState<B: IoBuf> {
    /// Between writes (`None` once the buffer was handed back).
    Idle(Option<B>),
    Writing(Op<Send<Slice<B>>>),
}

/// `write_all` on a stream: sends until every initialised byte went. A hand-written future so a
/// connection's task holds only this (the buffer lives in the op's allocation while it is in
/// flight): a server with many connections keeps each task small.
pub(crate) struct WriteAll<'a, B: IoBuf> {
    fd: &'a SharedFd,
    pipe: bool,
    state: WriteAllState<B>,
    /// Bytes written so far. (The total is the buffer's `bytes_init`, which cannot change
    /// while the future owns the buffer: not kept, so the future stays a word smaller.)
    written: usize,
}

impl<B: IoBuf> Future for WriteAll<'_, B> {
    type Output = BufResult<(), B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                WriteAllState::Idle(slot) => {
                    // The buffer stays in its slot until it leaves the future: a send that goes
                    // out at once never moves it.
                    let buf = slot.as_ref().expect("WriteAll polled after it completed");
                    let total = buf.bytes_init();
                    if this.written >= total {
                        return Poll::Ready((Ok(()), take(slot)));
                    }
                    // A dropped write still in the kernel goes first.
                    if this.fd.poll_settled(Interest::Write, cx).is_pending() {
                        return Poll::Pending;
                    }
                    // A socket's send, straight from the buffer with the fd borrowed: the op
                    // (and the slice `buf.slice` would check) is made only if it must wait.
                    if !this.pipe && total <= buf.bytes_total() {
                        let rest = total - this.written;
                        let ptr = buf.stable_ptr().wrapping_add(this.written);
                        // SAFETY: `written < total == bytes_init <= bytes_total`, so `ptr` is
                        // followed by `rest` initialised bytes of the buffer, which the future
                        // owns (and does not move) during the call.
                        match unsafe { send_at_once(this.fd, ptr, rest) } {
                            WriteAtOnce::Sent(n) if n as usize == rest => {
                                this.written = total;
                                return Poll::Ready((Ok(()), take(slot)));
                            }
                            WriteAtOnce::Sent(n) => {
                                if let Some(out) = this.sent_in_place(Ok(n)) {
                                    return Poll::Ready(out);
                                }
                                continue;
                            }
                            WriteAtOnce::Failed(e) => {
                                if let Some(out) = this.sent_in_place(Err(e)) {
                                    return Poll::Ready(out);
                                }
                                continue;
                            }
                            WriteAtOnce::Wait { tried, driver } => {
                                this.wait(tried, driver);
                                continue;
                            }
                            WriteAtOnce::Slow => {}
                        }
                    }
                    if let Some(out) = this.send_op_at_once() {
                        return Poll::Ready(out);
                    }
                }
                WriteAllState::Writing(op) => {
                    let done = ready!(Pin::new(op).poll(cx));
                    if let Some(out) = this.sent(done) {
                        return Poll::Ready(out);
                    }
                }
            }
        }
    }
}

/// The buffer out of `WriteAll`'s slot, which holds it while the future runs.
#[inline]
fn take<B>(slot: &mut Option<B>) -> B {
    slot.take().expect("checked by the caller")
}

impl<B: IoBuf> WriteAll<'_, B> {
    /// A send as an op tried at once (`Op::at_once`): for a pipe, or outside a loop. Out of
    /// line, so the common path above keeps fewer registers on the stack.
    #[inline(never)]
    fn send_op_at_once(&mut self) -> Option<BufResult<(), B>> {
        let WriteAllState::Idle(slot) = &mut self.state else {
            unreachable!("a send starts from Idle")
        };
        let buf = take(slot);
        let total = buf.bytes_init();
        let slice = buf.slice(self.written..total);
        // Tried at once first: a send that goes out now is never boxed.
        match Op::at_once(Send::new(self.fd.clone(), slice, self.pipe)) {
            // The rest went out at once: the buffer goes straight back to the caller (the state
            // stays `Idle(None)`, as after a last send).
            Ok((Ok(n), slice)) if n == total - self.written => {
                self.written = total;
                Some((Ok(()), slice.into_inner()))
            }
            Ok(done) => self.sent(done),
            Err(op) => {
                self.state = WriteAllState::Writing(op);
                None
            }
        }
    }

    /// The send made at once must wait: the rest of the buffer goes into its op.
    #[cold]
    #[inline(never)]
    fn wait(&mut self, tried: bool, driver: Rc<DriverCell>) {
        let WriteAllState::Idle(slot) = &mut self.state else {
            unreachable!("a send made at once leaves the buffer in Idle")
        };
        let buf = take(slot);
        let total = buf.bytes_init();
        let send = Send::new(self.fd.clone(), buf.slice(self.written..total), false);
        self.state = WriteAllState::Writing(Op::waiting(send, tried, driver));
    }

    /// As [`sent`](Self::sent), for a send made at once while the buffer stayed in `Idle`.
    #[inline]
    fn sent_in_place(&mut self, res: io::Result<u32>) -> Option<BufResult<(), B>> {
        let err = match res {
            Ok(0) => io::Error::new(
                io::ErrorKind::WriteZero,
                "the kernel accepted no more bytes",
            ),
            Ok(n) => {
                self.written += n as usize;
                return None;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return None,
            Err(e) => e,
        };
        let WriteAllState::Idle(slot) = &mut self.state else {
            unreachable!("a send made at once leaves the buffer in Idle")
        };
        Some((Err(err), take(slot)))
    }

    /// One send's result: the output when the write ends here (an error), else `None` with
    /// the buffer back in `Idle` for the next send.
    #[inline]
    fn sent(&mut self, (res, slice): BufResult<usize, Slice<B>>) -> Option<BufResult<(), B>> {
        let buf = slice.into_inner();
        match res {
            Ok(0) => {
                self.state = WriteAllState::Idle(None);
                let e = io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the kernel accepted no more bytes",
                );
                return Some((Err(e), buf));
            }
            Ok(n) => self.written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                self.state = WriteAllState::Idle(None);
                return Some((Err(e), buf));
            }
        }
        self.state = WriteAllState::Idle(Some(buf));
        None
    }
}

/// The public I/O methods of a stream type with a field `io: Stream`.
macro_rules! stream_methods {
    () => {
        /// The shared fd, for poll-based I/O (`compat`).
        #[allow(dead_code)]
        pub(crate) fn shared_fd(&self) -> &$crate::driver::fd::SharedFd {
            &self.io.fd
        }

        /// Reads into `buf` from its start up to its capacity and sets its length to the bytes
        /// read. `Ok(0)` means the peer closed its side (or `buf` has no capacity).
        ///
        /// Cancel-safe: if the future is dropped (say, by a timeout) after the kernel received
        /// data into it, those bytes are returned first by the next read on this stream.
        ///
        /// On epoll a read whose data is already there completes without yielding, up to the
        /// cooperative budget (128 ops per task poll); on io_uring it usually completes through
        /// the ring at the next turn. See [`spawn`](crate::spawn) on how this changes the order
        /// in which tasks run.
        ///
        /// # Errors
        ///
        /// The kernel's error, e.g. `ConnectionReset` when the peer reset the connection.
        pub async fn read<B: $crate::buf::IoBufMut>(
            &self,
            buf: B,
        ) -> $crate::buf::BufResult<usize, B> {
            self.io.read(buf).await
        }

        /// Receives into a buffer of the loop's receive pool (see
        /// [`Builder::recv_pool`](crate::Builder::recv_pool)) and returns it; an empty
        /// [`PooledBuf`](crate::buf::PooledBuf) means the peer closed its side.
        ///
        /// A connection waiting here holds no buffer: on io_uring the kernel picks one from the
        /// pool's buffer ring when data arrives, fed by one multishot receive that stays armed
        /// across calls; on epoll the loop takes one just before the `recv`. Data that arrives
        /// while nobody awaits waits in the stream's own queue (bounded: past 16 deliveries the
        /// receive pauses until the queue drains).
        ///
        /// Cancel-safe and ordered: dropping the future loses no byte, and `read` and
        /// `recv_pooled` may be mixed on one stream (a `read` first takes what was queued).
        ///
        /// While every buffer of the pool is held (by `PooledBuf`s not yet dropped, or queued on
        /// streams nobody reads) this waits until one comes back; it never fails with `ENOBUFS`.
        ///
        /// # Errors
        ///
        /// The kernel's error, e.g. `ConnectionReset`; `OutOfMemory` if the pool cannot be
        /// allocated; an error outside a running loop.
        pub fn recv_pooled(
            &self,
        ) -> impl std::future::Future<Output = std::io::Result<$crate::buf::PooledBuf>> + '_ {
            self.io.recv_pooled()
        }

        /// As [`recv_pooled`](Self::recv_pooled), but hands over everything that arrived: waits
        /// for the next receive, then appends its buffer and every buffer already delivered
        /// behind it to `out`, in order, and returns the bytes appended; 0 means the peer closed
        /// its side (`out` is left as it was).
        ///
        /// On io_uring with Linux 6.10+ one receive completion may fill several pool buffers at
        /// once (a bundle, `IORING_RECVSEND_BUNDLE`): a stream with much data waiting gets it in
        /// one call, as one [`PooledBuf`](crate::buf::PooledBuf) per buffer, each up to the pool's
        /// buffer size. Elsewhere it returns what one receive brought, one buffer.
        ///
        /// Cancel-safe as `recv_pooled` is. An error, or the end of stream, queued behind the
        /// buffers is left for the next call.
        ///
        /// # Errors
        ///
        /// As [`recv_pooled`](Self::recv_pooled).
        ///
        /// # Examples
        ///
        /// ```
        /// use ringloop::net::{TcpListener, TcpStream};
        ///
        /// ringloop::run(async {
        ///     let listener = TcpListener::bind("127.0.0.1:0")?;
        ///     let client = TcpStream::connect(listener.local_addr()?).await?;
        ///     let (server, _) = listener.accept().await?;
        ///     client.write_all(vec![7u8; 100_000]).await.0?;
        ///     drop(client);
        ///     let (mut bufs, mut total) = (Vec::new(), 0);
        ///     loop {
        ///         match server.recv_pooled_many(&mut bufs).await? {
        ///             0 => break,
        ///             n => total += n,
        ///         }
        ///         // Each buffer could be written on as it is, with no copy; here they go back
        ///         // to the pool.
        ///         bufs.clear();
        ///     }
        ///     assert_eq!(total, 100_000);
        ///     std::io::Result::Ok(())
        /// })
        /// .unwrap();
        /// ```
        pub async fn recv_pooled_many(
            &self,
            out: &mut Vec<$crate::buf::PooledBuf>,
        ) -> std::io::Result<usize> {
            self.io.recv_pooled_many(out).await
        }

        /// Reads into several buffers in order, each from its start up to its capacity, and sets
        /// each one's length to what it received. Returns the total.
        ///
        /// # Errors
        ///
        /// As [`read`](Self::read).
        pub async fn readv<B: $crate::buf::IoBufMut>(
            &self,
            bufs: Vec<B>,
        ) -> $crate::buf::BufResult<usize, Vec<B>> {
            self.io.readv(bufs).await
        }

        /// Writes some of `buf`'s initialised bytes; returns how many.
        ///
        /// # Errors
        ///
        /// The kernel's error, e.g. `BrokenPipe` or `ConnectionReset` when the peer is gone
        /// (never a `SIGPIPE`).
        pub async fn write<B: $crate::buf::IoBuf>(
            &self,
            buf: B,
        ) -> $crate::buf::BufResult<usize, B> {
            self.io.write(buf).await
        }

        /// Writes the initialised bytes of several buffers in order, in one call; returns how
        /// many bytes went (possibly fewer than all).
        ///
        /// # Errors
        ///
        /// As [`write`](Self::write).
        pub async fn writev<B: $crate::buf::IoBuf>(
            &self,
            bufs: Vec<B>,
        ) -> $crate::buf::BufResult<usize, Vec<B>> {
            self.io.writev(bufs).await
        }

        /// Writes all of `buf`'s initialised bytes.
        ///
        /// `buf` is owned (a `Vec<u8>`, `Bytes`, `Rc<[u8]>`, a byte literal `b"hi\n"`, ...: see
        /// [`IoBuf`](crate::buf::IoBuf)). A borrowed `&[u8]` that is not `'static` is refused
        /// with "borrowed data escapes ... argument requires that `'1` must outlive `'static`":
        /// the loop must own the bytes while the kernel may read them; pass `data.to_vec()`, or
        /// keep the data in an `Rc<[u8]>` or `Bytes` to share it without copying.
        ///
        /// # Errors
        ///
        /// As [`write`](Self::write); `WriteZero` if the kernel accepted no bytes. On error, an
        /// unknown prefix of the bytes may have been sent.
        pub fn write_all<B: $crate::buf::IoBuf>(
            &self,
            buf: B,
        ) -> impl std::future::Future<Output = $crate::buf::BufResult<(), B>> + '_ {
            self.io.write_all(buf)
        }

        /// Sends `len` bytes of `file` from `offset` without copying them through user space,
        /// looping over short transfers as `write_all` does; returns how many bytes went, fewer
        /// than `len` only if the file ends first (0 from or past its end).
        ///
        /// The loop thread never waits for the disk: `sendfile(2)` runs on it, when the socket
        /// is writable, only over the part of the range that the page cache holds. From the
        /// first page that is not resident on, io_uring moves page references through a pipe
        /// the thread keeps for it with two `IORING_OP_SPLICE`s per chunk, which the kernel's
        /// workers run (`RINGLOOP_DISABLE=splice` turns that off); epoll (or uring without
        /// splices) reads the rest on the blocking pool, 1 MiB at a time, and sends it.
        ///
        /// Dropping the future cancels it as any write: some bytes may have gone, the stream
        /// stays usable, and its next write waits for a splice still in the kernel.
        ///
        /// # Errors
        ///
        /// The kernel's error (`BrokenPipe` once the peer is gone), with the bytes sent so far
        /// lost to the count; `InvalidInput` for a file that is neither a regular file nor a
        /// block device (a directory, a FIFO, `/dev/null`: the same error on both backends, its
        /// message naming the file's kind) and for an offset past `i64::MAX`.
        pub async fn send_file(
            &self,
            file: &$crate::fs::File,
            offset: u64,
            len: u64,
        ) -> std::io::Result<u64> {
            $crate::op::splice::send_file(&self.io.fd, &[], file.shared_fd(), offset, len).await
        }

        /// As [`send_file`](Self::send_file), with all of `head` sent first: a response's
        /// headers, then its body from the file. `head` goes with `MSG_MORE`, so the kernel
        /// holds it to leave with the file's first bytes in one TCP segment where they fit,
        /// instead of a segment of its own under `TCP_NODELAY` (half the packets for a small
        /// file, and no `TCP_CORK` calls around the response). `head` is sent by a syscall on the
        /// loop thread, never by a ring op, so a borrowed slice does. Returns the file's bytes
        /// sent, as `send_file`.
        ///
        /// # Errors
        ///
        /// As [`send_file`](Self::send_file). Dropped, or failed, part-way: some of `head` (and
        /// of the file) may have gone.
        pub async fn send_file_with_head(
            &self,
            head: &[u8],
            file: &$crate::fs::File,
            offset: u64,
            len: u64,
        ) -> std::io::Result<u64> {
            $crate::op::splice::send_file(&self.io.fd, head, file.shared_fd(), offset, len).await
        }

        /// Shuts down the read half, the write half, or both (the peer reads end-of-stream after
        /// a write shutdown).
        ///
        /// # Errors
        ///
        /// `NotConnected` if the connection is gone.
        pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
            self.io.shutdown(how)
        }
    };
}

pub(crate) use stream_methods;
