//! bbolt database files, the format of etcd's backend: a streaming writer
//! and a reader. Pure file IO, no knowledge of what the buckets mean.
//!
//! # Layout (bbolt's `page.go`, `node.go`, `db.go`; all integers little-endian)
//!
//! - The file is a sequence of pages, each [`PAGE_SIZE`] bytes (the writer;
//!   the reader takes the size from the meta page). A page starts with a
//!   16-byte header: `id u64`, `flags u16`, `count u16`, `overflow u32` (the
//!   number of pages after this one that belong to it, for elements larger
//!   than a page).
//! - Pages 0 and 1 are meta pages (flag 0x04): `magic u32` = 0xED0CDAED,
//!   `version u32` = 2, `page_size u32`, `flags u32`, the root bucket
//!   `{root pgid u64, sequence u64}`, `freelist pgid u64`, `pgid u64` (the
//!   high-water mark: pages `0..pgid` are in use), `txid u64`, and a
//!   checksum: FNV-1a 64 over the 56 meta bytes before it. A reader uses the
//!   valid meta with the higher txid.
//! - A freelist page (flag 0x10) lists free page ids; `count` of them.
//! - A leaf page (flag 0x02) holds `count` elements `{flags u32, pos u32,
//!   ksize u32, vsize u32}` after the header, then the keys and values;
//!   `pos` is the distance from the element to its key. An element with
//!   flag 1 is a bucket: its value is a bucket header `{root pgid u64,
//!   sequence u64}`, followed by the bucket's whole leaf page when `root` is
//!   0 (an "inline" bucket).
//! - A branch page (flag 0x01) holds elements `{pos u32, ksize u32, pgid
//!   u64}`: the first key under each child page, in key order.
//! - The root bucket's tree lists the top-level buckets, by name.
//!
//! # Writer
//!
//! [`Writer`] builds each bucket's B+tree bottom-up from keys given in
//! order: one pending page per tree level; a full page is written at once
//! and its first key goes up a level. A page holds at least two elements
//! (bbolt's minimum), more as long as they fit. Memory is a page per level
//! (or two elements, if larger), whatever the number of keys. Pages are filled up to
//! the page size (bbolt's compaction fills them to 90%). Pages 0 to 2 are
//! reserved first; once every bucket is written the root bucket's tree
//! follows and the meta pages are written last, at the front, so the sink
//! must be seekable (a file). The file has no free pages and its size is
//! exactly its high-water mark.
//!
//! # Reader
//!
//! [`Reader`] walks a bucket's tree depth first, reading one page (with its
//! overflow) at a time with positioned reads. Buckets nested inside a
//! bucket, which etcd never makes, are reported as unsupported.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The page size of the files the writer makes.
pub const PAGE_SIZE: usize = 4096;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER_LEN: usize = 16;
/// Leaf and branch elements are both 16 bytes.
const ELEMENT_LEN: usize = 16;
const BUCKET_HEADER_LEN: usize = 16;
/// Bytes of the meta covered by its checksum.
const META_CHECKSUM_OFFSET: usize = 56;
const META_LEN: usize = 64;

const FLAG_BRANCH: u16 = 0x01;
const FLAG_LEAF: u16 = 0x02;
const FLAG_META: u16 = 0x04;
const FLAG_FREELIST: u16 = 0x10;
/// A leaf element that is a bucket.
const ELEMENT_BUCKET: u32 = 0x01;

/// The freelist page of the files the writer makes.
const FREELIST_PGID: u64 = 2;
/// A page is only full with at least this many elements (bbolt's
/// `MinKeysPerPage`), so that each tree level has fewer pages than the one
/// below.
const MIN_ELEMENTS_PER_PAGE: usize = 2;
/// bbolt refuses pages with this many elements or more.
const MAX_ELEMENTS_PER_PAGE: usize = 0xFFFF;
/// Deepest tree the reader follows (a loop in a corrupt file stops here).
const MAX_TREE_DEPTH: usize = 64;
/// Page sizes the reader accepts (bbolt uses the OS page size).
const MIN_PAGE_SIZE: usize = 1024;
const MAX_PAGE_SIZE: usize = 1 << 20;
/// Page sizes tried when the first meta page is unreadable.
const CANDIDATE_PAGE_SIZES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

/// What can go wrong with a bbolt file.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("not a bbolt database: {0}")]
    Invalid(String),
    #[error("corrupt bbolt database: {0}")]
    Corrupt(String),
    #[error("unsupported bbolt database: {0}")]
    Unsupported(String),
    /// A caller of the writer gave keys or buckets out of order or empty.
    #[error("bbolt writer: {0}")]
    Usage(String),
}

type Result<T, E = BoltError> = std::result::Result<T, E>;

/// FNV-1a, 64 bits: the meta page checksum.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The value of a bucket element that points at a root page.
fn bucket_header(root: u64) -> [u8; BUCKET_HEADER_LEN] {
    let mut out = [0u8; BUCKET_HEADER_LEN];
    out[..8].copy_from_slice(&root.to_le_bytes());
    out
}

// ---- Writer -------------------------------------------------------------------

/// What [`Writer::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenDb {
    /// Pages in the file (its high-water mark).
    pub pages: u64,
    /// The file's size in bytes.
    pub size_bytes: u64,
}

/// One element of a page being built.
struct Element {
    flags: u32,
    key: Vec<u8>,
    /// A leaf's value; empty in a branch.
    value: Vec<u8>,
    /// A branch's child page; 0 in a leaf.
    child: u64,
}

impl Element {
    fn len(&self) -> usize {
        ELEMENT_LEN + self.key.len() + self.value.len()
    }
}

/// One level of a tree being built: the page not yet written.
#[derive(Default)]
struct Level {
    elements: Vec<Element>,
    /// Size of the pending page: header, elements, keys and values.
    bytes: usize,
    /// Pages already written at this level.
    written: u64,
}

/// A B+tree built bottom-up from keys in order; level 0 holds the leaves.
#[derive(Default)]
struct TreeBuilder {
    levels: Vec<Level>,
    last_key: Option<Vec<u8>>,
}

/// Where pages go: sequential writes, page ids handed out in order.
struct PageSink<W> {
    out: W,
    next_pgid: u64,
    scratch: Vec<u8>,
}

impl<W: Write> PageSink<W> {
    /// Writes one leaf or branch page (with overflow pages if the elements
    /// need them) and returns its id.
    fn write_node(&mut self, leaf: bool, elements: &[Element]) -> Result<u64> {
        assert!(
            elements.len() < MAX_ELEMENTS_PER_PAGE,
            "bbolt page with {} elements",
            elements.len()
        );
        let bytes = PAGE_HEADER_LEN + elements.iter().map(Element::len).sum::<usize>();
        let pages = bytes.div_ceil(PAGE_SIZE).max(1);
        let pgid = self.next_pgid;
        let buf = &mut self.scratch;
        buf.clear();
        buf.resize(pages * PAGE_SIZE, 0);
        buf[..8].copy_from_slice(&pgid.to_le_bytes());
        let flags = if leaf { FLAG_LEAF } else { FLAG_BRANCH };
        buf[8..10].copy_from_slice(&flags.to_le_bytes());
        buf[10..12].copy_from_slice(&(elements.len() as u16).to_le_bytes());
        let overflow = u32::try_from(pages - 1)
            .map_err(|_| BoltError::Usage(format!("an element of {bytes} bytes")))?;
        buf[12..16].copy_from_slice(&overflow.to_le_bytes());
        let mut data = PAGE_HEADER_LEN + elements.len() * ELEMENT_LEN;
        for (i, element) in elements.iter().enumerate() {
            let at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
            let pos = (data - at) as u32;
            let ksize = element.key.len() as u32;
            if leaf {
                buf[at..at + 4].copy_from_slice(&element.flags.to_le_bytes());
                buf[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
                buf[at + 8..at + 12].copy_from_slice(&ksize.to_le_bytes());
                let vsize = element.value.len() as u32;
                buf[at + 12..at + 16].copy_from_slice(&vsize.to_le_bytes());
            } else {
                buf[at..at + 4].copy_from_slice(&pos.to_le_bytes());
                buf[at + 4..at + 8].copy_from_slice(&ksize.to_le_bytes());
                buf[at + 8..at + 16].copy_from_slice(&element.child.to_le_bytes());
            }
            buf[data..data + element.key.len()].copy_from_slice(&element.key);
            data += element.key.len();
            buf[data..data + element.value.len()].copy_from_slice(&element.value);
            data += element.value.len();
        }
        self.out.write_all(buf)?;
        self.next_pgid += pages as u64;
        Ok(pgid)
    }
}

impl TreeBuilder {
    /// Adds a leaf element; keys must come in strictly increasing order.
    fn push<W: Write>(
        &mut self,
        sink: &mut PageSink<W>,
        flags: u32,
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        if key.is_empty() {
            return Err(BoltError::Usage("empty key".to_string()));
        }
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(BoltError::Usage(format!(
                "key {key:02x?} is not above the previous key"
            )));
        }
        self.last_key = Some(key.to_vec());
        let element = Element {
            flags,
            key: key.to_vec(),
            value: value.to_vec(),
            child: 0,
        };
        self.add(sink, 0, element)
    }

    fn add<W: Write>(
        &mut self,
        sink: &mut PageSink<W>,
        level: usize,
        element: Element,
    ) -> Result<()> {
        if self.levels.len() == level {
            if level == MAX_TREE_DEPTH {
                return Err(BoltError::Usage(format!(
                    "a tree deeper than {MAX_TREE_DEPTH} levels"
                )));
            }
            self.levels.push(Level::default());
        }
        let len = element.len();
        let pending = &self.levels[level];
        // Like bbolt, never split below two elements a page: a page of one
        // large element per level would need a level above it forever.
        if pending.elements.len() >= MIN_ELEMENTS_PER_PAGE && pending.bytes + len > PAGE_SIZE {
            self.flush(sink, level)?;
        }
        let pending = &mut self.levels[level];
        if pending.elements.is_empty() {
            pending.bytes = PAGE_HEADER_LEN;
        }
        pending.bytes += len;
        pending.elements.push(element);
        Ok(())
    }

    /// Writes level `level`'s pending page and adds it to the level above.
    fn flush<W: Write>(&mut self, sink: &mut PageSink<W>, level: usize) -> Result<()> {
        let elements = std::mem::take(&mut self.levels[level].elements);
        let pgid = sink.write_node(level == 0, &elements)?;
        self.levels[level].written += 1;
        let first = elements
            .into_iter()
            .next()
            .expect("a flushed page has an element")
            .key;
        self.add(
            sink,
            level + 1,
            Element {
                flags: 0,
                key: first,
                value: Vec::new(),
                child: pgid,
            },
        )
    }

    /// Writes what is pending and returns the root page's id.
    fn finish<W: Write>(mut self, sink: &mut PageSink<W>) -> Result<u64> {
        if self.levels.is_empty() {
            // An empty tree: one empty leaf.
            return sink.write_node(true, &[]);
        }
        let mut level = 0;
        loop {
            let top = level + 1 == self.levels.len();
            if top && self.levels[level].written == 0 {
                let elements = std::mem::take(&mut self.levels[level].elements);
                return sink.write_node(level == 0, &elements);
            }
            if !self.levels[level].elements.is_empty() {
                self.flush(sink, level)?;
            }
            level += 1;
        }
    }
}

/// Writes a bbolt file bucket by bucket, key by key, both in increasing
/// byte order, with bounded memory. See the module docs.
pub struct Writer<W: Write + Seek> {
    sink: PageSink<W>,
    /// Start of the file in the sink.
    base: u64,
    /// The finished top-level buckets: name and root page.
    buckets: Vec<(Vec<u8>, u64)>,
    /// The bucket being written.
    current: Option<(Vec<u8>, TreeBuilder)>,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts a file at the sink's current position: reserves the two meta
    /// pages and writes an empty freelist.
    pub fn new(mut out: W) -> Result<Self> {
        let base = out.stream_position()?;
        let mut reserved = vec![0u8; 3 * PAGE_SIZE];
        let freelist = &mut reserved[FREELIST_PGID as usize * PAGE_SIZE..];
        freelist[..8].copy_from_slice(&FREELIST_PGID.to_le_bytes());
        freelist[8..10].copy_from_slice(&FLAG_FREELIST.to_le_bytes());
        out.write_all(&reserved)?;
        Ok(Writer {
            sink: PageSink {
                out,
                next_pgid: FREELIST_PGID + 1,
                scratch: Vec::with_capacity(PAGE_SIZE),
            },
            base,
            buckets: Vec::new(),
            current: None,
        })
    }

    /// Starts the next top-level bucket; names must increase.
    pub fn begin_bucket(&mut self, name: &[u8]) -> Result<()> {
        self.end_bucket()?;
        if name.is_empty() {
            return Err(BoltError::Usage("empty bucket name".to_string()));
        }
        if self
            .buckets
            .last()
            .is_some_and(|(last, _)| last.as_slice() >= name)
        {
            return Err(BoltError::Usage(format!(
                "bucket {:?} is not above the previous bucket",
                String::from_utf8_lossy(name)
            )));
        }
        self.current = Some((name.to_vec(), TreeBuilder::default()));
        Ok(())
    }

    /// Adds a key to the current bucket; keys must increase.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let Some((_, tree)) = self.current.as_mut() else {
            return Err(BoltError::Usage("put outside a bucket".to_string()));
        };
        tree.push(&mut self.sink, 0, key, value)
    }

    fn end_bucket(&mut self) -> Result<()> {
        if let Some((name, tree)) = self.current.take() {
            let root = tree.finish(&mut self.sink)?;
            self.buckets.push((name, root));
        }
        Ok(())
    }

    /// Ends the last bucket, writes the root bucket's tree and the meta
    /// pages, and leaves the sink positioned at the end of the file.
    pub fn finish(mut self) -> Result<(W, WrittenDb)> {
        self.end_bucket()?;
        let mut root_tree = TreeBuilder::default();
        for (name, root) in std::mem::take(&mut self.buckets) {
            root_tree.push(&mut self.sink, ELEMENT_BUCKET, &name, &bucket_header(root))?;
        }
        let root = root_tree.finish(&mut self.sink)?;
        let pages = self.sink.next_pgid;
        let mut out = self.sink.out;
        out.seek(SeekFrom::Start(self.base))?;
        for txid in 0..2u64 {
            out.write_all(&meta_page(txid, root, pages))?;
        }
        let size_bytes = pages * PAGE_SIZE as u64;
        out.seek(SeekFrom::Start(self.base + size_bytes))?;
        out.flush()?;
        Ok((out, WrittenDb { pages, size_bytes }))
    }
}

/// Meta page `txid` (0 or 1; bbolt keeps txid `n` in page `n % 2`).
fn meta_page(txid: u64, root: u64, pages: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    page[..8].copy_from_slice(&txid.to_le_bytes());
    page[8..10].copy_from_slice(&FLAG_META.to_le_bytes());
    let meta = &mut page[PAGE_HEADER_LEN..PAGE_HEADER_LEN + META_LEN];
    meta[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    meta[4..8].copy_from_slice(&VERSION.to_le_bytes());
    meta[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    // flags (12..16) stay 0, as does the root bucket's sequence (24..32).
    meta[16..24].copy_from_slice(&root.to_le_bytes());
    meta[32..40].copy_from_slice(&FREELIST_PGID.to_le_bytes());
    meta[40..48].copy_from_slice(&pages.to_le_bytes());
    meta[48..56].copy_from_slice(&txid.to_le_bytes());
    let checksum = fnv1a64(&meta[..META_CHECKSUM_OFFSET]);
    meta[56..64].copy_from_slice(&checksum.to_le_bytes());
    page
}

// ---- Reader -------------------------------------------------------------------

/// The meta page a reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: usize,
    /// The root bucket's root page.
    pub root: u64,
    pub freelist: u64,
    /// The high-water mark: pages `0..pages` are in use.
    pub pages: u64,
    pub txid: u64,
}

impl Meta {
    /// The meta in `page` (a whole page), if it is valid.
    fn parse(page: &[u8]) -> Option<Meta> {
        let meta = page.get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + META_LEN)?;
        let valid = u32_at(meta, 0) == MAGIC
            && u32_at(meta, 4) == VERSION
            && u64_at(meta, 56) == fnv1a64(&meta[..META_CHECKSUM_OFFSET]);
        valid.then(|| Meta {
            page_size: u32_at(meta, 8) as usize,
            root: u64_at(meta, 16),
            freelist: u64_at(meta, 32),
            pages: u64_at(meta, 40),
            txid: u64_at(meta, 48),
        })
    }

    /// The database size as bbolt reports it (`tx.Size()`).
    pub fn size_bytes(&self) -> u64 {
        self.pages * self.page_size as u64
    }
}

/// A read-only view of a bbolt file; see the module docs.
pub struct Reader {
    file: File,
    meta: Meta,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// A page (with its overflow pages) as read from the file or from an
/// inline bucket.
struct Page<'a> {
    bytes: &'a [u8],
    flags: u16,
    count: usize,
}

impl<'a> Page<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Page<'a>> {
        if bytes.len() < PAGE_HEADER_LEN {
            return Err(BoltError::Corrupt(format!(
                "a page of {} bytes",
                bytes.len()
            )));
        }
        let page = Page {
            bytes,
            flags: u16_at(bytes, 8),
            count: usize::from(u16_at(bytes, 10)),
        };
        if PAGE_HEADER_LEN + page.count * ELEMENT_LEN > bytes.len() {
            return Err(BoltError::Corrupt(format!(
                "page {} has {} elements in {} bytes",
                u64_at(bytes, 0),
                page.count,
                bytes.len()
            )));
        }
        Ok(page)
    }

    fn slice(&self, at: usize, len: usize) -> Result<&'a [u8]> {
        at.checked_add(len)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| {
                BoltError::Corrupt(format!(
                    "element data at {at}+{len} beyond page {} of {} bytes",
                    u64_at(self.bytes, 0),
                    self.bytes.len()
                ))
            })
    }

    /// Leaf element `i`: flags, key, value.
    fn leaf(&self, i: usize) -> Result<(u32, &'a [u8], &'a [u8])> {
        let at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
        let e = &self.bytes[at..at + ELEMENT_LEN];
        let (flags, pos, ksize, vsize) = (
            u32_at(e, 0),
            u32_at(e, 4) as usize,
            u32_at(e, 8) as usize,
            u32_at(e, 12) as usize,
        );
        let key = self.slice(at + pos, ksize)?;
        let value = self.slice(at + pos + ksize, vsize)?;
        Ok((flags, key, value))
    }

    /// Branch element `i`: first key and child page.
    fn branch(&self, i: usize) -> Result<(&'a [u8], u64)> {
        let at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
        let e = &self.bytes[at..at + ELEMENT_LEN];
        let (pos, ksize, child) = (u32_at(e, 0) as usize, u32_at(e, 4) as usize, u64_at(e, 8));
        Ok((self.slice(at + pos, ksize)?, child))
    }
}

/// One entry of a bucket, as [`Reader::for_each`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A key and its value.
    Value(&'a [u8], &'a [u8]),
    /// A nested bucket's name and header (only in the root bucket).
    Bucket(&'a [u8], &'a [u8]),
}

impl Reader {
    /// Opens `path` and picks its meta page. Bytes after the high-water
    /// mark (such as the SHA-256 trailer of a snapshot) are ignored.
    pub fn open(path: &Path) -> Result<Reader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let read_page = |offset: u64, size: usize| -> Result<Option<Vec<u8>>> {
            if offset + size as u64 > len {
                return Ok(None);
            }
            let mut buf = vec![0u8; size];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Some(buf))
        };
        let header_len = PAGE_HEADER_LEN + META_LEN;
        // The page size is in the metas; meta 0 is at offset 0 whatever it is.
        let mut page_size = read_page(0, header_len)?
            .and_then(|page| Meta::parse(&page))
            .map(|meta| meta.page_size);
        if page_size.is_none() {
            for candidate in CANDIDATE_PAGE_SIZES {
                let meta = read_page(candidate as u64, header_len)?.and_then(|p| Meta::parse(&p));
                if meta.is_some_and(|m| m.page_size == candidate) {
                    page_size = Some(candidate);
                    break;
                }
            }
        }
        let Some(page_size) = page_size else {
            return Err(BoltError::Invalid(format!(
                "{}: no valid meta page",
                path.display()
            )));
        };
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(BoltError::Invalid(format!("page size {page_size}")));
        }
        let metas = [0u64, 1].map(|i| {
            read_page(i * page_size as u64, header_len)
                .map(|page| page.and_then(|p| Meta::parse(&p)))
        });
        let [m0, m1] = metas;
        let meta = match (m0?, m1?) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => {
                return Err(BoltError::Invalid(format!(
                    "{}: no valid meta page",
                    path.display()
                )));
            }
        };
        if meta.page_size != page_size {
            return Err(BoltError::Corrupt(format!(
                "meta pages disagree on the page size: {page_size} and {}",
                meta.page_size
            )));
        }
        if meta.size_bytes() > len {
            return Err(BoltError::Corrupt(format!(
                "{} pages of {page_size} bytes but the file has {len} bytes",
                meta.pages
            )));
        }
        Ok(Reader { file, meta })
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Reads page `pgid` with its overflow pages.
    fn read_page(&self, pgid: u64) -> Result<Vec<u8>> {
        let page_size = self.meta.page_size;
        if pgid < 2 || pgid >= self.meta.pages {
            return Err(BoltError::Corrupt(format!(
                "page {pgid} outside 2..{}",
                self.meta.pages
            )));
        }
        let mut buf = vec![0u8; page_size];
        self.file.read_exact_at(&mut buf, pgid * page_size as u64)?;
        if u64_at(&buf, 0) != pgid {
            return Err(BoltError::Corrupt(format!(
                "page {pgid} says it is page {}",
                u64_at(&buf, 0)
            )));
        }
        let overflow = u64::from(u32_at(&buf, 12));
        if overflow > 0 {
            if pgid + overflow >= self.meta.pages {
                return Err(BoltError::Corrupt(format!(
                    "page {pgid} overflows by {overflow} pages past the end"
                )));
            }
            buf.resize((overflow as usize + 1) * page_size, 0);
            self.file
                .read_exact_at(&mut buf[page_size..], (pgid + 1) * page_size as u64)?;
        }
        Ok(buf)
    }

    /// The names of the top-level buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        self.walk(self.meta.root, 0, &mut |entry| {
            if let Entry::Bucket(name, _) = entry {
                names.push(name.to_vec());
            }
            Ok::<_, BoltError>(())
        })?;
        Ok(names)
    }

    /// Calls `each` with every key and value of top-level bucket `name`, in
    /// key order. Returns false if there is no such bucket.
    pub fn for_each<E: From<BoltError>>(
        &self,
        name: &[u8],
        mut each: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut header = None;
        self.walk(self.meta.root, 0, &mut |entry| {
            if let Entry::Bucket(bucket, value) = entry
                && bucket == name
            {
                header = Some(value.to_vec());
            }
            Ok::<_, BoltError>(())
        })?;
        let Some(header) = header else {
            return Ok(false);
        };
        if header.len() < BUCKET_HEADER_LEN {
            return Err(BoltError::Corrupt(format!(
                "bucket {:?} has a header of {} bytes",
                String::from_utf8_lossy(name),
                header.len()
            ))
            .into());
        }
        let mut visit = |entry: Entry<'_>| match entry {
            Entry::Value(key, value) => each(key, value),
            Entry::Bucket(key, _) => Err(BoltError::Unsupported(format!(
                "bucket {:?} inside bucket {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(name)
            ))
            .into()),
        };
        let root = u64_at(&header, 0);
        if root == 0 {
            let page = Page::parse(&header[BUCKET_HEADER_LEN..]).map_err(E::from)?;
            self.walk_page(&page, 0, &mut visit)?;
        } else {
            self.walk(root, 0, &mut visit)?;
        }
        Ok(true)
    }

    fn walk<E: From<BoltError>>(
        &self,
        pgid: u64,
        depth: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let bytes = self.read_page(pgid)?;
        let page = Page::parse(&bytes)?;
        self.walk_page(&page, depth, visit)
    }

    fn walk_page<E: From<BoltError>>(
        &self,
        page: &Page<'_>,
        depth: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if depth > MAX_TREE_DEPTH {
            return Err(BoltError::Corrupt(format!("a tree deeper than {MAX_TREE_DEPTH}")).into());
        }
        match page.flags {
            FLAG_LEAF => {
                for i in 0..page.count {
                    let (flags, key, value) = page.leaf(i)?;
                    if flags & ELEMENT_BUCKET != 0 {
                        visit(Entry::Bucket(key, value))?;
                    } else {
                        visit(Entry::Value(key, value))?;
                    }
                }
            }
            FLAG_BRANCH => {
                for i in 0..page.count {
                    let (_, child) = page.branch(i)?;
                    self.walk(child, depth + 1, visit)?;
                }
            }
            other => {
                return Err(BoltError::Corrupt(format!(
                    "page {} has flags {other:#x} where a leaf or branch was expected",
                    u64_at(page.bytes, 0)
                ))
                .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

    fn write(buckets: &Buckets) -> (tempfile::NamedTempFile, WrittenDb) {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = Writer::new(file.reopen().unwrap()).unwrap();
        for (name, entries) in buckets {
            writer.begin_bucket(name).unwrap();
            for (k, v) in entries {
                writer.put(k, v).unwrap();
            }
        }
        let (_, written) = writer.finish().unwrap();
        (file, written)
    }

    fn read(path: &Path) -> Buckets {
        let reader = Reader::open(path).unwrap();
        let mut out = Buckets::new();
        for name in reader.buckets().unwrap() {
            let mut entries = BTreeMap::new();
            let mut last: Option<Vec<u8>> = None;
            let found = reader
                .for_each(&name, |k, v| {
                    assert!(last.as_deref() < Some(k), "keys in order");
                    last = Some(k.to_vec());
                    entries.insert(k.to_vec(), v.to_vec());
                    Ok::<_, BoltError>(())
                })
                .unwrap();
            assert!(found);
            out.insert(name, entries);
        }
        out
    }

    /// Every page below the high-water mark, by id: (flags, overflow).
    fn pages(path: &Path) -> BTreeMap<u64, (u16, u32)> {
        let bytes = std::fs::read(path).unwrap();
        let mut out = BTreeMap::new();
        let mut pgid = 0;
        while (pgid as usize) * PAGE_SIZE < bytes.len() {
            let page = &bytes[pgid as usize * PAGE_SIZE..];
            assert_eq!(u64_at(page, 0), pgid, "page id in its header");
            let overflow = u32_at(page, 12);
            out.insert(pgid, (u16_at(page, 8), overflow));
            pgid += 1 + u64::from(overflow);
        }
        out
    }

    fn bucket(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> BTreeMap<Vec<u8>, Vec<u8>> {
        entries.into_iter().collect()
    }

    #[test]
    fn round_trip_small() {
        let mut buckets = Buckets::new();
        buckets.insert(
            b"key".to_vec(),
            bucket([(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), Vec::new())]),
        );
        buckets.insert(b"meta".to_vec(), bucket([(b"x".to_vec(), b"yz".to_vec())]));
        let (file, written) = write(&buckets);
        assert_eq!(read(file.path()), buckets);
        // Two metas, the freelist, two leaves and the root bucket's leaf.
        assert_eq!(written.pages, 6);
        assert_eq!(std::fs::metadata(file.path()).unwrap().len(), 6 * 4096);
        let reader = Reader::open(file.path()).unwrap();
        assert_eq!(reader.meta().txid, 1);
        assert_eq!(reader.meta().root, 5);
        assert_eq!(reader.meta().freelist, 2);
        assert!(
            !reader
                .for_each(b"nope", |_, _| Ok::<_, BoltError>(()))
                .unwrap()
        );
    }

    #[test]
    fn empty_buckets_and_empty_database() {
        let mut buckets = Buckets::new();
        buckets.insert(b"a".to_vec(), BTreeMap::new());
        buckets.insert(b"b".to_vec(), bucket([(b"k".to_vec(), b"v".to_vec())]));
        buckets.insert(b"c".to_vec(), BTreeMap::new());
        let (file, _) = write(&buckets);
        assert_eq!(read(file.path()), buckets);

        let (file, written) = write(&Buckets::new());
        assert_eq!(written.pages, 4);
        assert!(read(file.path()).is_empty());
    }

    #[test]
    fn many_keys_make_a_multi_level_tree() {
        let entries = bucket((0..120_000u32).map(|i| {
            (
                format!("/registry/pods/ns-{:03}/pod-{i:08}", i % 97).into_bytes(),
                i.to_be_bytes().repeat(3),
            )
        }));
        let mut buckets = Buckets::new();
        buckets.insert(b"key".to_vec(), entries);
        let (file, written) = write(&buckets);
        assert_eq!(read(file.path()), buckets);
        let pages = pages(file.path());
        assert_eq!(pages.len() as u64, written.pages, "no overflow pages");
        let branches = pages.values().filter(|(f, _)| *f == FLAG_BRANCH).count();
        // Leaves of about 4 KiB hold about 80 of these; a branch page about
        // 120 children: three levels of branches.
        assert!(branches > 10, "{branches} branch pages");
        // The root bucket's leaf page is the last one.
        let reader = Reader::open(file.path()).unwrap();
        assert_eq!(reader.meta().root, written.pages - 1);
    }

    #[test]
    fn large_values_use_overflow_pages() {
        let big = |n: usize, seed: u8| -> Vec<u8> { (0..n).map(|i| (i as u8) ^ seed).collect() };
        let mut buckets = Buckets::new();
        buckets.insert(
            b"key".to_vec(),
            bucket([
                (b"a".to_vec(), b"small".to_vec()),
                (b"b".to_vec(), big(10_000, 1)),
                (b"c".to_vec(), big(4096 - 16 - 16 - 1, 2)),
                (b"d".to_vec(), big(1_500_000, 3)),
                (b"e".to_vec(), b"small too".to_vec()),
                (vec![b'f'; 5000], big(3, 4)),
            ]),
        );
        let (file, _) = write(&buckets);
        assert_eq!(read(file.path()), buckets);
        let pages = pages(file.path());
        assert!(
            pages.values().any(|(_, overflow)| *overflow >= 366),
            "{pages:?}"
        );
    }

    #[test]
    fn keys_larger_than_a_page() {
        let entries = bucket((0..50u8).map(|i| (vec![i + 1; 5000 + usize::from(i)], vec![i])));
        let mut buckets = Buckets::new();
        buckets.insert(b"big".to_vec(), entries);
        let (file, _) = write(&buckets);
        assert_eq!(read(file.path()), buckets);
        let branches = pages(file.path())
            .values()
            .filter(|(f, _)| *f == FLAG_BRANCH)
            .count();
        // 25 leaves of two, then 13, 7, 4 and 2 branches of two, then the root.
        assert_eq!(branches, 13 + 7 + 4 + 2 + 1);
    }

    #[test]
    fn meta_checksum_and_page_ids_are_checked() {
        let mut buckets = Buckets::new();
        buckets.insert(b"k".to_vec(), bucket([(b"a".to_vec(), b"1".to_vec())]));
        let (file, _) = write(&buckets);
        let mut bytes = std::fs::read(file.path()).unwrap();
        // Break meta 1 (the newer one): meta 0 is used.
        bytes[4096 + 16 + 40] ^= 1;
        std::fs::write(file.path(), &bytes).unwrap();
        let reader = Reader::open(file.path()).unwrap();
        assert_eq!(reader.meta().txid, 0);
        assert_eq!(read(file.path()), buckets);
        // Break both.
        bytes[16] ^= 1;
        std::fs::write(file.path(), &bytes).unwrap();
        assert!(matches!(
            Reader::open(file.path()),
            Err(BoltError::Invalid(_))
        ));
        // A trailer after the pages is ignored.
        let (file, _) = write(&buckets);
        let mut bytes = std::fs::read(file.path()).unwrap();
        bytes.extend_from_slice(&[7u8; 32]);
        std::fs::write(file.path(), &bytes).unwrap();
        assert_eq!(read(file.path()), buckets);
    }

    #[test]
    fn reads_inline_buckets() {
        // An inline bucket as bbolt makes it: root 0, then a leaf page.
        let mut inline = bucket_header(0).to_vec();
        let elements = [
            Element {
                flags: 0,
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                child: 0,
            },
            Element {
                flags: 0,
                key: b"bb".to_vec(),
                value: b"22".to_vec(),
                child: 0,
            },
        ];
        let mut sink = PageSink {
            out: Vec::new(),
            next_pgid: 0,
            scratch: Vec::new(),
        };
        sink.write_node(true, &elements).unwrap();
        let used = PAGE_HEADER_LEN + elements.iter().map(Element::len).sum::<usize>();
        inline.extend_from_slice(&sink.out[..used]);

        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = Writer::new(file.reopen().unwrap()).unwrap();
        writer.begin_bucket(b"x").unwrap();
        writer.put(b"k", b"v").unwrap();
        // Make the root bucket hold the inline bucket by hand.
        writer.end_bucket().unwrap();
        let mut root_tree = TreeBuilder::default();
        let (x, x_root) = writer.buckets.pop().unwrap();
        root_tree
            .push(&mut writer.sink, ELEMENT_BUCKET, b"inl", &inline)
            .unwrap();
        root_tree
            .push(&mut writer.sink, ELEMENT_BUCKET, &x, &bucket_header(x_root))
            .unwrap();
        let root = root_tree.finish(&mut writer.sink).unwrap();
        let pages = writer.sink.next_pgid;
        let mut out = writer.sink.out;
        out.seek(SeekFrom::Start(0)).unwrap();
        out.write_all(&meta_page(0, root, pages)).unwrap();
        out.write_all(&meta_page(1, root, pages)).unwrap();
        drop(out);

        let mut expected = Buckets::new();
        expected.insert(
            b"inl".to_vec(),
            bucket([
                (b"a".to_vec(), b"1".to_vec()),
                (b"bb".to_vec(), b"22".to_vec()),
            ]),
        );
        expected.insert(b"x".to_vec(), bucket([(b"k".to_vec(), b"v".to_vec())]));
        assert_eq!(read(file.path()), expected);
    }

    #[test]
    fn writer_refuses_out_of_order_and_empty_input() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = Writer::new(file.reopen().unwrap()).unwrap();
        assert!(matches!(writer.put(b"a", b""), Err(BoltError::Usage(_))));
        writer.begin_bucket(b"b").unwrap();
        writer.put(b"b", b"").unwrap();
        assert!(matches!(writer.put(b"b", b""), Err(BoltError::Usage(_))));
        assert!(matches!(writer.put(b"a", b""), Err(BoltError::Usage(_))));
        assert!(matches!(writer.put(b"", b""), Err(BoltError::Usage(_))));
        assert!(matches!(
            writer.begin_bucket(b"a"),
            Err(BoltError::Usage(_))
        ));
        assert!(matches!(writer.begin_bucket(b""), Err(BoltError::Usage(_))));
    }

    #[test]
    fn fnv1a64_matches_the_reference() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
