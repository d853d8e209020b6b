//! The contents of one regular file as a program sees it: the durable bytes in the backing object
//! file with the unsynced writes laid over them in memory, page by page.
//!
//! Reads take a page from memory when it was written since the last sync and from the backing
//! object otherwise. A truncation hides the backing object's bytes beyond the new size (they read
//! as zeros if the file grows again) without touching the object. [`Overlay::sync`] is the only
//! place that writes the backing object.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Granularity of the in-memory copy. A write of one byte keeps (and a sync writes) its whole
/// page; that is invisible to readers, which never see bytes beyond the file's size.
pub(crate) const PAGE: u64 = 4096;

/// Unsynced contents of one file.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// The size programs see.
    size: u64,
    /// Bytes of the backing object that still show through: its length at the last sync, cut by
    /// every later truncation. Always `<= size`.
    base_valid: u64,
    /// Pages written since the last sync, by page index; bytes beyond `size` are always zero.
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Overlay {
    /// Contents equal to a backing object of `len` bytes (or of none, with 0).
    pub(crate) fn synced(len: u64) -> Overlay {
        Overlay { size: len, base_valid: len, pages: BTreeMap::new() }
    }

    /// The size programs see.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory that a power cut would lose (whole pages).
    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// True when the backing object differs from what programs see.
    pub(crate) fn is_dirty(&self) -> bool {
        !self.pages.is_empty() || self.base_valid != self.size
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub(crate) fn read(&self, base: Option<&File>, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let within = (pos % PAGE) as usize;
            let take = (PAGE - pos % PAGE).min(end - pos) as usize;
            match self.pages.get(&index) {
                Some(page) => out.extend_from_slice(&page[within..within + take]),
                None => {
                    let start = out.len();
                    out.resize(start + take, 0);
                    self.read_base(base, pos, &mut out[start..])?;
                }
            }
            pos += take as u64;
        }
        Ok(out)
    }

    /// Writes `data` at `offset`, growing the file if needed.
    pub(crate) fn write(&mut self, base: Option<&File>, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = pos / PAGE;
            let within = (pos % PAGE) as usize;
            let take = ((PAGE as usize) - within).min(rest.len());
            let page = self.page_mut(base, index)?;
            page[within..within + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            pos += take as u64;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Writes zeros over `len` bytes at `offset` without growing the file when `keep_size`.
    pub(crate) fn zero(&mut self, base: Option<&File>, offset: u64, len: u64, keep_size: bool) -> io::Result<()> {
        let end = offset.saturating_add(len);
        let limit = if keep_size { end.min(self.size) } else { end };
        let mut pos = offset;
        while pos < limit {
            let index = pos / PAGE;
            let within = (pos % PAGE) as usize;
            let take = (PAGE - pos % PAGE).min(limit - pos) as usize;
            // A range beyond everything the backing object shows is already zero.
            if self.pages.contains_key(&index) || pos < self.base_valid {
                let page = self.page_mut(base, index)?;
                page[within..within + take].fill(0);
            }
            pos += take as u64;
        }
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// Changes the size; bytes beyond a shrunk size are gone and read as zeros if it grows again.
    pub(crate) fn truncate(&mut self, size: u64) {
        if size < self.size {
            let first_gone = size.div_ceil(PAGE);
            self.pages.split_off(&first_gone);
            if !size.is_multiple_of(PAGE)
                && let Some(page) = self.pages.get_mut(&(size / PAGE))
            {
                page[(size % PAGE) as usize..].fill(0);
            }
            self.base_valid = self.base_valid.min(size);
        }
        self.size = size;
    }

    /// Makes the backing object equal to what programs see (the caller fsyncs nothing: the
    /// backing directory stands for the disk, and its own durability is not simulated).
    pub(crate) fn sync(&mut self, base: &File) -> io::Result<()> {
        // Bytes the object holds beyond what still shows through must not come back.
        base.set_len(self.base_valid)?;
        for (index, page) in &self.pages {
            let start = index * PAGE;
            let len = (self.size.saturating_sub(start)).min(PAGE) as usize;
            base.write_all_at(&page[..len], start)?;
        }
        base.set_len(self.size)?;
        self.pages.clear();
        self.base_valid = self.size;
        Ok(())
    }

    /// Forgets the unsynced writes of a file nobody can reach any more.
    pub(crate) fn discard(&mut self) {
        self.pages.clear();
    }

    /// The page `index`, copied in from the backing object on first write.
    fn page_mut(&mut self, base: Option<&File>, index: u64) -> io::Result<&mut Box<[u8]>> {
        if !self.pages.contains_key(&index) {
            let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
            let start = index * PAGE;
            let shown = self.size.min(start + PAGE).saturating_sub(start) as usize;
            self.read_base(base, start, &mut page[..shown])?;
            self.pages.insert(index, page);
        }
        self.pages
            .get_mut(&index)
            .ok_or_else(|| io::Error::other("page vanished"))
    }

    /// Fills `buf` with the backing object's bytes at `offset`, zeros beyond `base_valid`.
    fn read_base(&self, base: Option<&File>, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let Some(file) = base else { return Ok(()) };
        let visible = self.base_valid.saturating_sub(offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < visible {
            match file.read_at(&mut buf[done..visible], offset + done as u64) {
                Ok(0) => break, // the object is shorter than recorded: the rest stays zero
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bytes: &[u8]) -> io::Result<File> {
        let file = tempfile::tempfile()?;
        file.write_all_at(bytes, 0)?;
        Ok(file)
    }

    fn whole(o: &Overlay, base: Option<&File>) -> io::Result<Vec<u8>> {
        o.read(base, 0, u64::MAX)
    }

    #[test]
    fn writes_show_over_the_object_until_sync_writes_them() -> io::Result<()> {
        let base = object(&[b'a'; 10_000])?;
        let mut o = Overlay::synced(10_000);
        o.write(Some(&base), 4094, b"XYZW")?;
        let mut want = vec![b'a'; 10_000];
        want[4094..4098].copy_from_slice(b"XYZW");
        assert_eq!(whole(&o, Some(&base))?, want);
        let mut on_disk = vec![0u8; 10_000];
        base.read_exact_at(&mut on_disk, 0)?;
        assert_eq!(on_disk, vec![b'a'; 10_000], "nothing reaches the object before sync");
        assert!(o.is_dirty());
        o.sync(&base)?;
        base.read_exact_at(&mut on_disk, 0)?;
        assert_eq!(on_disk, want);
        assert!(!o.is_dirty());
        Ok(())
    }

    #[test]
    fn truncate_then_grow_reads_zeros_and_sync_cuts_the_object() -> io::Result<()> {
        let base = object(b"0123456789")?;
        let mut o = Overlay::synced(10);
        o.truncate(4);
        o.truncate(8);
        assert_eq!(whole(&o, Some(&base))?, b"0123\0\0\0\0");
        o.sync(&base)?;
        assert_eq!(base.metadata()?.len(), 8);
        let mut on_disk = vec![0u8; 8];
        base.read_exact_at(&mut on_disk, 0)?;
        assert_eq!(on_disk, b"0123\0\0\0\0");
        Ok(())
    }

    #[test]
    fn truncate_inside_a_written_page_zeroes_its_tail() -> io::Result<()> {
        let mut o = Overlay::synced(0);
        o.write(None, 0, &[7u8; 100])?;
        o.truncate(10);
        o.truncate(20);
        assert_eq!(whole(&o, None)?, [&[7u8; 10][..], &[0u8; 10][..]].concat());
        Ok(())
    }

    #[test]
    fn zero_range_keeps_size_when_asked() -> io::Result<()> {
        let base = object(&[1u8; 50])?;
        let mut o = Overlay::synced(50);
        o.zero(Some(&base), 40, 100, true)?;
        assert_eq!(o.size(), 50);
        assert_eq!(whole(&o, Some(&base))?, [&[1u8; 40][..], &[0u8; 10][..]].concat());
        o.zero(Some(&base), 60, 10, false)?;
        assert_eq!(o.size(), 70);
        Ok(())
    }

    #[test]
    fn read_past_the_end_is_short() -> io::Result<()> {
        let mut o = Overlay::synced(0);
        o.write(None, 0, b"abc")?;
        assert_eq!(o.read(None, 1, 100)?, b"bc");
        assert_eq!(o.read(None, 5, 100)?, b"");
        Ok(())
    }
}
