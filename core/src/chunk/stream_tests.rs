use std::io::{self, Read};

use fastcdc::v2020::{Normalization, StreamCDC};
use proptest::prelude::*;

use super::*;
use crate::chunk::tests::pseudo_random;

/// A reader over a slice that returns short reads of the sizes in `sizes`
/// (cycled), some of them interrupted first.
struct ShortReads<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
    interrupt: bool,
}

impl<'a> ShortReads<'a> {
    fn new(data: &'a [u8], sizes: Vec<usize>, interrupt: bool) -> Self {
        Self {
            data,
            sizes,
            next: 0,
            interrupt,
        }
    }
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        if self.interrupt && size.is_multiple_of(3) && self.next.is_multiple_of(2) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Fails with `kind` once `after` bytes were read.
struct FailsAfter<'a> {
    data: &'a [u8],
    after: usize,
    read: usize,
}

impl Read for FailsAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read >= self.after {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.after - self.read).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.read += n;
        Ok(n)
    }
}

/// (offset, len, id) of each chunk fastcdc's StreamCDC cuts.
fn reference(source: impl Read, p: ChunkParams) -> Vec<(u64, usize, ChunkId)> {
    StreamCDC::with_level(
        source,
        p.min as usize,
        p.avg as usize,
        p.max as usize,
        Normalization::Level1,
    )
    .map(|c| {
        let c = c.expect("in-memory read");
        (c.offset, c.length, ChunkId::of(&c.data))
    })
    .collect()
}

fn small() -> ChunkParams {
    ChunkParams::new(16 * 1024, 32 * 1024, 64 * 1024).expect("valid params")
}

/// Random params within `ChunkParams::new`'s bounds, small enough for fast
/// cases: 16..64 KiB min, max up to 64 KiB above avg.
fn params() -> impl Strategy<Value = ChunkParams> {
    (8192u32..32768, 0u32..32768, 0u32..32768).prop_map(|(min, avg_add, max_add)| {
        let min = 2 * min;
        let avg = min + 2 * avg_add;
        ChunkParams::new(min, avg, avg + 2 * max_add).expect("valid params")
    })
}

/// Random bytes with runs of zeros (cut at `max`) and repeats of one
/// random pattern (equal chunks).
fn artifact() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u8..3, 0usize..300_000, any::<u64>()), 0..8).prop_map(|parts| {
        let pattern = pseudo_random(50_000, 99);
        let mut out = Vec::new();
        for (kind, len, seed) in parts {
            match kind {
                0 => out.extend(pseudo_random(len, seed)),
                1 => out.resize(out.len() + len, 0),
                _ => out.extend(pattern.iter().cycle().take(len)),
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cuts_exactly_where_stream_cdc_does(
        data in artifact(),
        p in params(),
        sizes in prop::collection::vec(1usize..200_000, 1..16),
        block_extra in 0usize..300_000,
        interrupt in any::<bool>(),
    ) {
        let expected = reference(ShortReads::new(&data, sizes.clone(), false), p);
        let block = 2 * p.max as usize + block_extra;

        // Hashing each chunk as it comes and dropping it: blocks are reused.
        let streamed: Vec<_> = Cuts::with_block(ShortReads::new(&data, sizes.clone(), interrupt), p, block)
            .map(|c| {
                let c = c.expect("in-memory read").into_chunk();
                (c.offset(), c.data().len(), c.id())
            })
            .collect();
        prop_assert_eq!(&streamed, &expected);

        // Holding every chunk: no block still pointed into is reused.
        let held: Vec<Cut> = Cuts::with_block(ShortReads::new(&data, sizes, interrupt), p, block)
            .collect::<Result<_, _>>()
            .expect("in-memory read");
        prop_assert_eq!(held.len(), expected.len());
        for (cut, &(offset, len, id)) in held.iter().zip(&expected) {
            prop_assert_eq!((cut.offset(), cut.len()), (offset, len));
            prop_assert_eq!(cut.data(), &data[offset as usize..offset as usize + len]);
            prop_assert!(id.matches(cut.data()));
        }
    }
}

#[test]
fn default_blocks_cut_like_stream_cdc_across_block_ends() {
    // 20 MiB: three 8 MiB blocks, whole reads as from a file.
    let data = pseudo_random(20 << 20, 5);
    let p = ChunkParams::DEFAULT;
    let got: Vec<_> = super::super::chunks(&data[..], p)
        .map(|c| {
            let c = c.expect("in-memory read");
            (c.offset(), c.data().len(), c.id())
        })
        .collect();
    assert_eq!(got, reference(&data[..], p));
}

#[test]
fn empty_input_has_no_cuts() {
    assert_eq!(Cuts::new(&[][..], small()).count(), 0);
}

#[test]
fn input_shorter_than_min_is_one_chunk() {
    let data = pseudo_random(1000, 9);
    let cuts: Vec<Cut> = Cuts::new(ShortReads::new(&data, vec![7, 300], true), small())
        .collect::<Result<_, _>>()
        .expect("in-memory read");
    assert_eq!(cuts.len(), 1);
    assert_eq!((cuts[0].offset(), cuts[0].data()), (0, &data[..]));
}

#[test]
fn a_read_error_is_yielded_once_then_the_cutter_stops() {
    let data = pseudo_random(3 << 20, 11);
    let p = small();
    let fails_at = 2 * p.max as usize + 12_345;
    let mut cuts = Cuts::with_block(
        FailsAfter {
            data: &data,
            after: fails_at,
            read: 0,
        },
        p,
        0,
    );
    let mut covered = 0u64;
    let err = loop {
        match cuts.next() {
            Some(Ok(cut)) => {
                assert_eq!(cut.offset(), covered);
                assert_eq!(
                    cut.data(),
                    &data[covered as usize..covered as usize + cut.len()]
                );
                covered += cut.len() as u64;
            }
            Some(Err(e)) => break e,
            None => panic!("the cutter ended without reporting the read error"),
        }
    };
    assert!(matches!(err, ChunkError::Io(ref e) if e.to_string() == "disk on fire"));
    assert!((covered as usize) < fails_at);
    assert!(cuts.next().is_none());
    assert!(cuts.next().is_none());
}

#[test]
fn blocks_no_chunk_points_into_are_reused() {
    let data = pseudo_random(4 << 20, 13);
    let p = small();
    // 128 KiB blocks: 32 of them for 4 MiB.
    let mut cuts = Cuts::with_block(&data[..], p, 0);
    let mut covered = 0;
    for cut in cuts.by_ref() {
        let cut = cut.expect("in-memory read");
        assert_eq!(cut.data(), &data[covered..covered + cut.len()]);
        covered += cut.len();
    }
    assert_eq!(covered, data.len());
    assert!(cuts.allocated <= SPARE_BLOCKS + 1, "{cuts:?}");

    // Holding every chunk, each block is a new one.
    let mut cuts = Cuts::with_block(&data[..], p, 0);
    let held: Vec<Cut> = cuts
        .by_ref()
        .collect::<Result<_, _>>()
        .expect("in-memory read");
    assert!(
        cuts.allocated >= data.len() / (2 * p.max as usize),
        "{cuts:?}"
    );
    assert_eq!(held.iter().map(Cut::len).sum::<usize>(), data.len());
}
