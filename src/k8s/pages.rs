//! Lists in pages, each read as it arrives. A Job or a pod may be as large as the apiserver
//! stores (1.5 MiB, etcd's default request limit: a pod template of a megabyte, say). kube's
//! `Api::list` reads a response's whole body, then copies it into its text, before decoding it:
//! twice the page at once, whatever jobtrace then keeps of its objects ([`crate::core::slim`]). Here the
//! body is split as it arrives into the objects of its `items`, each decoded alone, so that a
//! list holds one object's bytes at a time (and the chunk the connection read), whatever its page.
//! The pages stay small all the same: jobtrace keeps what it reads of a page until the page is
//! done, and each page is a request of its own.

use std::io;

use futures::AsyncBufReadExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// Whole Jobs or pods per page (the controller's watches, a finished Job's pods): a list of
/// 10,000 ordinary Jobs (a few KiB each) takes 1,000 requests. The watches' lists are kube's,
/// read whole: at most 15 MiB arrive at once, and are copied once.
pub const OBJECTS: u32 = 10;
/// Jobs' metadata per page (the policies' status, `jobtrace release`): metadata is usually a few
/// KiB, but annotations may hold 256 KiB, and labels and `managedFields` as much as the object.
pub const METADATA: u32 = 20;

/// The most of a list's own `metadata` that is read (its continue token is a few hundred bytes).
const MAX_LIST_METADATA: usize = 64 * 1024;

/// The pages of one list, requested one after the other as they are taken.
pub struct Pages<K> {
    client: Client,
    request: kube::core::Request,
    params: ListParams,
    done: bool,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> Pages<K>
where
    K: Resource + DeserializeOwned,
{
    /// The list of `api` with `params`, `size` objects a page; of their metadata alone (the
    /// apiserver's `PartialObjectMetadataList`) when `K` is read through the metadata API.
    pub fn new(api: Api<K>, params: ListParams, size: u32) -> Self {
        Self {
            request: kube::core::Request::new(api.resource_url()),
            client: api.into_client(),
            params: params.limit(size),
            done: false,
            _kind: std::marker::PhantomData,
        }
    }

    /// The next page's objects; `None` after the last. After an error, the list is to be made
    /// again from the start (a continue token expires with the version it was issued at).
    pub async fn next(&mut self) -> Option<Result<Vec<K>, kube::Error>> {
        if self.done {
            return None;
        }
        let (items, token) = match self.page().await {
            Ok(page) => page,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        match token.filter(|c| !c.is_empty()) {
            // Later pages come from the first one's snapshot: the token carries its version.
            Some(token) => self.params.continue_token = Some(token),
            None => self.done = true,
        }
        Some(Ok(items))
    }

    /// One page: its objects, and its continue token.
    async fn page(&self) -> Result<(Vec<K>, Option<String>), kube::Error> {
        let mut request = if K::metadata_api() {
            self.request.list_metadata(&self.params)
        } else {
            self.request.list(&self.params)
        }
        .map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("list");
        // An answer other than 2xx is an error (the apiserver's Status) before any byte is read.
        let body = self.client.request_stream(request).await?;
        let mut body = std::pin::pin!(body);
        let mut split = Split::default();
        let mut items = Vec::new();
        loop {
            let chunk = body.fill_buf().await.map_err(kube::Error::ReadEvents)?;
            if chunk.is_empty() {
                break;
            }
            let read = chunk.len();
            split.feed(chunk, &mut |item: &[u8]| {
                items.push(serde_json::from_slice(item)?);
                Ok(())
            })?;
            body.consume_unpin(read);
        }
        let meta = split.finish()?;
        Ok((items, meta.continue_))
    }
}

/// How many bytes of `bytes`, the inside of a string, come before its next quote or backslash:
/// eight bytes at a time (a variable of a megabyte is one string).
fn string_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let (quote, backslash) = (ONES * u64::from(b'"'), ONES * u64::from(b'\\'));
    let mut words = bytes.chunks_exact(8);
    let mut run = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // A byte of `word ^ quote` is zero where `word` has a quote; the lowest byte flagged
        // here is the first zero byte (a flag above it may be a borrow's).
        let (q, b) = (word ^ quote, word ^ backslash);
        let found = (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & HIGH;
        if found != 0 {
            return run + found.trailing_zeros() as usize / 8;
        }
        run += 8;
    }
    run + words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .unwrap_or(words.remainder().len())
}

/// A list's body split as it arrives: each object of its `items` handed over whole (its bytes,
/// to be decoded alone), the list's `metadata` kept, nothing else. Only the list's own nesting is
/// followed: each object is JSON that serde checks when it decodes it. A body that ends before
/// the list does is an error, never a shorter list.
#[derive(Default)]
struct Split {
    /// Objects and arrays open: 1 in the list, 2 in its `items`, 3 or more in one of them.
    depth: usize,
    /// Within a string, and right after a backslash in one.
    string: bool,
    escape: bool,
    /// The list's field being read: its name, then its value.
    field: Field,
    /// The name of the list's field being read (the first bytes of it: `items` and `metadata`
    /// are all it looks for).
    name: Vec<u8>,
    /// The bytes of the object of `items` being read.
    item: Vec<u8>,
    /// The bytes of the list's `metadata`.
    meta: Vec<u8>,
    list_meta: Option<ListMeta>,
    /// Whether the list's opening brace, and its closing one, were read.
    list: Braces,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Braces {
    #[default]
    Unopened,
    Open,
    Closed,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A field's name, up to its colon.
    #[default]
    Name,
    Items,
    Metadata,
    Other,
}

fn malformed(what: &str) -> kube::Error {
    kube::Error::ReadEvents(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("list: {what}"),
    ))
}

impl Split {
    /// Reads `chunk`, the next bytes of the body; `item` takes each whole object of `items`.
    fn feed(
        &mut self,
        mut chunk: &[u8],
        item: &mut impl FnMut(&[u8]) -> Result<(), serde_json::Error>,
    ) -> Result<(), kube::Error> {
        while !chunk.is_empty() {
            if self.string {
                // A string's run up to its next quote or backslash is taken at once.
                let run = if self.escape { 0 } else { string_run(chunk) };
                self.keep(&chunk[..run]);
                chunk = &chunk[run..];
                let Some((&b, rest)) = chunk.split_first() else {
                    break;
                };
                chunk = rest;
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else {
                    self.string = false;
                    if self.naming() {
                        continue;
                    }
                }
                self.keep(&[b]);
                continue;
            }
            let Some((&b, rest)) = chunk.split_first() else {
                break;
            };
            chunk = rest;
            self.structure(b, item)?;
        }
        Ok(())
    }

    /// A byte out of any string.
    fn structure(
        &mut self,
        b: u8,
        item: &mut impl FnMut(&[u8]) -> Result<(), serde_json::Error>,
    ) -> Result<(), kube::Error> {
        if self.list == Braces::Closed {
            return if b.is_ascii_whitespace() {
                Ok(())
            } else {
                Err(malformed("bytes after the list"))
            };
        }
        let between_items = self.depth == 2 && self.field == Field::Items;
        if between_items && !matches!(b, b'{' | b',' | b']') && !b.is_ascii_whitespace() {
            return Err(malformed("an item is not an object"));
        }
        match b {
            b'"' => {
                self.string = true;
                if self.naming() {
                    self.name.clear();
                } else {
                    self.keep(&[b]);
                }
            }
            b'{' | b'[' => {
                self.depth += 1;
                match (self.depth, self.field) {
                    (1, _) if b == b'{' && self.list == Braces::Unopened => {
                        self.list = Braces::Open;
                    }
                    (1, _) => return Err(malformed("not an object")),
                    (2, Field::Items) if b == b'[' => {}
                    (2, Field::Items) => return Err(malformed("items is not an array")),
                    _ => self.keep(&[b]),
                }
            }
            b'}' | b']' => {
                match (self.depth, self.field) {
                    (0, _) => return Err(malformed("unbalanced")),
                    (1, _) => {
                        self.end_field()?;
                        self.list = Braces::Closed;
                    }
                    (2, Field::Items) => {}
                    (3, Field::Items) => {
                        self.keep(&[b]);
                        item(&self.item).map_err(kube::Error::SerdeError)?;
                        self.item.clear();
                    }
                    _ => self.keep(&[b]),
                }
                self.depth -= 1;
            }
            b':' if self.depth == 1 && self.field == Field::Name => {
                self.field = match self.name.as_slice() {
                    b"items" => Field::Items,
                    b"metadata" => Field::Metadata,
                    _ => Field::Other,
                };
            }
            b',' if self.depth == 1 => {
                self.end_field()?;
                self.field = Field::Name;
            }
            b',' if between_items => {}
            _ if b.is_ascii_whitespace() => self.keep(&[b]),
            _ if self.depth == 0 => return Err(malformed("not an object")),
            _ => self.keep(&[b]),
        }
        Ok(())
    }

    /// Whether a string here is the name of one of the list's fields.
    fn naming(&self) -> bool {
        self.depth == 1 && self.field == Field::Name
    }

    /// Bytes of the list, kept where they belong: a field's name, an object of `items`, the
    /// list's `metadata`; the rest (`kind`, `apiVersion`) is dropped.
    fn keep(&mut self, bytes: &[u8]) {
        match self.field {
            Field::Name if self.naming() && self.string => {
                let room = (b"metadata".len() + 1).saturating_sub(self.name.len());
                self.name.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Field::Items if self.depth >= 3 => self.item.extend_from_slice(bytes),
            Field::Metadata if self.depth >= 2 => {
                // Past the bound, the metadata is not valid JSON and fails to decode.
                let room = MAX_LIST_METADATA.saturating_sub(self.meta.len());
                self.meta.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            _ => {}
        }
    }

    /// The end of one of the list's fields (its comma, or the list's closing brace).
    fn end_field(&mut self) -> Result<(), kube::Error> {
        if self.field == Field::Metadata {
            let meta = serde_json::from_slice(&self.meta).map_err(kube::Error::SerdeError)?;
            self.list_meta = Some(meta);
            self.meta = Vec::new();
        }
        Ok(())
    }

    /// The list's metadata, once the whole body was read.
    fn finish(self) -> Result<ListMeta, kube::Error> {
        if self.list != Braces::Closed {
            return Err(kube::Error::ReadEvents(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "list: the body ended before the list did",
            )));
        }
        Ok(self.list_meta.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests;
