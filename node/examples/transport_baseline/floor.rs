//! The floor: the bare stream plus the per-byte work a chunk-verifying
//! store cannot avoid, with nothing of Pollen's protocol. The sending side
//! reads each piece from a file that is not in the page cache (as a seeder
//! reads its packs) and checks its BLAKE3 on a reader thread; the receiving side checks each
//! piece's BLAKE3 on a writer thread, writes it at its offset and syncs
//! once per [`SYNC_EVERY`]. Buffers are reused: no allocation, no zeroing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use tokio::sync::mpsc;

/// A piece: about the size of one of Pollen's chunks.
pub const PIECE: usize = 256 * 1024;
/// The receiver syncs its file once per this many bytes.
const SYNC_EVERY: u64 = 8 << 20;
/// Pieces queued to the writer thread.
const QUEUE: usize = 8;

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The sending side's file and the BLAKE3 of each of its pieces.
pub struct Source {
    file: Arc<File>,
    hashes: Arc<Vec<blake3::Hash>>,
}

impl Source {
    /// Writes `total` bytes to `dir/source.bin`, syncs them and drops them
    /// from the page cache, so the timed reads come from the disk.
    pub fn create(dir: &Path, total: u64) -> io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("source.bin"))?;
        let mut piece = vec![0u8; PIECE];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut hashes = Vec::new();
        let mut offset = 0u64;
        while offset < total {
            let len = (total - offset).min(PIECE as u64) as usize;
            for word in piece[..len].chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                word.copy_from_slice(&seed.to_le_bytes()[..word.len()]);
            }
            file.write_all_at(&piece[..len], offset)?;
            hashes.push(blake3::hash(&piece[..len]));
            offset += len as u64;
        }
        file.sync_all()?;
        posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
            .map_err(io::Error::from)?;
        Ok(Self {
            file: Arc::new(file),
            hashes: Arc::new(hashes),
        })
    }

    /// The BLAKE3 of each piece, in order: what the receiver checks against.
    pub fn hashes(&self) -> Arc<Vec<blake3::Hash>> {
        self.hashes.clone()
    }

    /// Sends `total` bytes: a reader thread reads each piece from the file
    /// and checks it, ahead of the stream, into reused buffers.
    pub async fn send<T: AsyncWrite + Unpin>(&self, io: &mut T, total: u64) -> io::Result<()> {
        let (full, mut ready) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (back, empty) = sync_channel::<Vec<u8>>(QUEUE + 2);
        for _ in 0..QUEUE + 2 {
            back.send(vec![0u8; PIECE])
                .map_err(|_| corrupt("no room for buffers"))?;
        }
        let (file, hashes) = (self.file.clone(), self.hashes.clone());
        let reader = std::thread::spawn(move || -> io::Result<()> {
            let mut offset = 0u64;
            for want in hashes.iter() {
                let len = (total - offset).min(PIECE as u64) as usize;
                let Ok(mut buf) = empty.recv() else {
                    break;
                };
                buf.resize(len, 0);
                file.read_exact_at(&mut buf, offset)?;
                if blake3::hash(&buf) != *want {
                    return Err(corrupt("a piece read back wrong"));
                }
                if full.blocking_send(buf).is_err() {
                    break;
                }
                offset += len as u64;
            }
            Ok(())
        });
        let mut sent = 0u64;
        while let Some(buf) = ready.recv().await {
            io.write_all(&buf).await?;
            sent += buf.len() as u64;
            let _ = back.try_send(buf);
        }
        reader.join().map_err(|_| corrupt("reader panicked"))??;
        if sent < total {
            return Err(corrupt("the reader stopped early"));
        }
        Ok(())
    }
}

/// The receiving side: reads pieces off the stream into reused buffers and
/// hands them to a writer thread.
pub struct Sink {
    full: SyncSender<(u64, Vec<u8>)>,
    empty: mpsc::Receiver<Vec<u8>>,
    writer: JoinHandle<io::Result<()>>,
}

impl Sink {
    /// A sink writing `dir/sink.bin`, checking each piece against `hashes`.
    pub fn create(dir: &Path, hashes: Arc<Vec<blake3::Hash>>) -> io::Result<Self> {
        let file = File::create(dir.join("sink.bin"))?;
        // Room for every buffer: a send never blocks, the buffers bound the queue.
        let (full, queued) = sync_channel::<(u64, Vec<u8>)>(QUEUE + 2);
        let (back, empty) = mpsc::channel(QUEUE + 2);
        for _ in 0..QUEUE + 2 {
            back.try_send(vec![0u8; PIECE])
                .map_err(|_| corrupt("no room for buffers"))?;
        }
        let writer = std::thread::spawn(move || {
            let mut unsynced = 0u64;
            for (i, (offset, buf)) in queued.into_iter().enumerate() {
                if hashes.get(i) != Some(&blake3::hash(&buf)) {
                    return Err(corrupt("a piece arrived wrong"));
                }
                file.write_all_at(&buf, offset)?;
                unsynced += buf.len() as u64;
                if unsynced >= SYNC_EVERY {
                    file.sync_data()?;
                    unsynced = 0;
                }
                let _ = back.blocking_send(buf);
            }
            file.sync_data()
        });
        Ok(Self {
            full,
            empty,
            writer,
        })
    }

    /// Receives `total` bytes and waits until all of them are written and
    /// synced.
    pub async fn receive<T: AsyncRead + Unpin>(
        mut self,
        io: &mut T,
        total: u64,
    ) -> io::Result<u64> {
        let mut offset = 0u64;
        while offset < total {
            let len = (total - offset).min(PIECE as u64) as usize;
            let Some(mut buf) = self.empty.recv().await else {
                break;
            };
            buf.resize(len, 0);
            io.read_exact(&mut buf).await?;
            if self.full.send((offset, buf)).is_err() {
                break;
            }
            offset += len as u64;
        }
        // A writer that stopped early says why when joined.
        drop(self.full);
        self.writer
            .join()
            .map_err(|_| corrupt("writer panicked"))??;
        if offset < total {
            return Err(corrupt("the writer stopped early"));
        }
        Ok(offset)
    }
}
