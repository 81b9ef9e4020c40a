//! Where an upload waits until it is whole. A masked input enters the sum only complete (a
//! partial one could never be taken out again), so the server keeps each upload in flight
//! aside until its last chunk arrives: in memory when it is small, otherwise in an unlinked
//! temporary file, read back a chunk at a time when the driver adds it. Server memory is
//! then the accumulator plus a few chunks, whatever m is; the disk holds at most
//! `max_concurrent_uploads` packed uploads.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::codec::{self, Limits};
use crate::error::CodecError;
use crate::messages::{ClientMessage, PackedRun};

/// An upload being received.
pub(super) enum Staging {
    /// Its runs, in memory.
    Memory(Vec<PackedRun>),
    /// Its runs' bytes in a file, their placement here.
    Disk(Spill),
}

/// A finished upload, ready for the sans-IO server.
// Built once per upload and moved once: boxing the message would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Staged {
    /// One packed masked input.
    Whole(ClientMessage),
    /// Pieces to read back and add in order ([`ClientMessage::MaskedChunk`]).
    Spilled(Spill),
}

/// An unlinked temporary file of packed runs.
pub(super) struct Spill {
    file: File,
    /// Set only where the file could not be unlinked while open: removed on drop.
    path: Option<PathBuf>,
    /// (offset, count, bytes) of each run, in file order.
    runs: Vec<(usize, usize, usize)>,
    /// Bits per element.
    bits: usize,
}

/// Most bytes of one piece handed back by [`Spill::replay`].
const REPLAY_BYTES: usize = 4 << 20;

impl Staging {
    /// Memory for uploads of at most `in_memory` packed bytes, a file in `dir` beyond.
    pub(super) fn new(
        limits: &Limits,
        in_memory: usize,
        dir: &Path,
        conn: u64,
    ) -> std::io::Result<Self> {
        let packed = codec::packed_len(limits.vector_len, limits.bits);
        let chunks = limits.vector_len.div_ceil(codec::CHUNK_ELEMS);
        if packed <= in_memory {
            return Ok(Staging::Memory(Vec::with_capacity(chunks)));
        }
        let mut spill = Spill::create(dir, conn, limits.bits as usize)?;
        spill.runs.reserve(chunks);
        Ok(Staging::Disk(spill))
    }

    /// Keeps one checked run.
    pub(super) fn push(&mut self, run: PackedRun) -> std::io::Result<()> {
        match self {
            Staging::Memory(runs) => runs.push(run),
            Staging::Disk(spill) => {
                spill.file.write_all(&run.bytes)?;
                spill.runs.push((run.offset, run.count, run.bytes.len()));
            }
        }
        Ok(())
    }

    /// The whole upload (its runs contiguous from 0 to the vector's end).
    pub(super) fn finish(self, limits: &Limits) -> Result<Staged, CodecError> {
        match self {
            Staging::Memory(runs) => Ok(Staged::Whole(codec::packed_input(runs, limits)?)),
            Staging::Disk(spill) => Ok(Staged::Spilled(spill)),
        }
    }
}

impl Spill {
    fn create(dir: &Path, conn: u64, bits: usize) -> std::io::Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut last = None;
        for attempt in 0..16 {
            let path = dir.join(format!(
                "secagg-upload-{}-{conn}-{stamp}-{attempt}",
                std::process::id()
            ));
            let mut options = OpenOptions::new();
            options.read(true).write(true).create_new(true);
            // Readable by this user only, for the moment before it is unlinked (masked
            // vectors reveal nothing alone, but they are the server's to keep).
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(file) => {
                    // Unlinked at once where the system allows: nothing is left behind.
                    let path = std::fs::remove_file(&path).err().map(|_| path);
                    return Ok(Self {
                        file,
                        path,
                        runs: Vec::new(),
                        bits,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary file name")))
    }

    /// Reads the runs back in order and hands them to `add`, consecutive runs joined into
    /// pieces of up to [`REPLAY_BYTES`] (a wire chunk's 65,536 elements end on a byte at
    /// any b, so their bytes concatenate): fewer, larger adds. Stops when `add` says no.
    pub(super) fn replay(mut self, mut add: impl FnMut(PackedRun) -> bool) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        let runs = std::mem::take(&mut self.runs);
        let mut piece: Option<PackedRun> = None;
        for (offset, count, len) in runs {
            let joins = piece.as_ref().is_some_and(|p| {
                p.offset + p.count == offset
                    && p.bytes.len() * 8 == p.count * self.bits
                    && p.bytes.len() + len <= REPLAY_BYTES
            });
            if !joins {
                if let Some(done) = piece.take() {
                    if !add(done) {
                        return Ok(());
                    }
                }
            }
            let p = piece.get_or_insert_with(|| PackedRun {
                offset,
                count: 0,
                bytes: Vec::with_capacity(len),
            });
            let at = p.bytes.len();
            p.bytes.resize(at + len, 0);
            self.file.read_exact(&mut p.bytes[at..])?;
            p.count += count;
        }
        if let Some(done) = piece {
            add(done);
        }
        Ok(())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
