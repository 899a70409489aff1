//! Lists in pages. A Job or a pod may be as large as the apiserver stores (1.5 MiB, etcd's
//! default request limit: a pod template of a megabyte, say), and a list's page arrives whole:
//! kube reads the response's body, then its text, before decoding it. So what a page may cost is
//! its number of objects times 1.5 MiB, whatever jobtrace then keeps of them ([`crate::slim`]),
//! and every list jobtrace makes of Jobs or pods is paged, small.

use kube::Api;
use kube::api::ListParams;
use serde::de::DeserializeOwned;

/// Whole Jobs or pods per page (the controller's watches, a finished Job's pods): at most 15 MiB
/// arrive at once; a list of 10,000 ordinary Jobs (a few KiB each) takes 1,000 requests.
pub const OBJECTS: u32 = 10;
/// Jobs' metadata per page (the policies' status, `jobtrace release`): metadata is usually a few
/// KiB, but annotations may hold 256 KiB, and labels and `managedFields` as much as the object,
/// so at most 30 MiB arrive at once.
pub const METADATA: u32 = 20;

/// The pages of one list, requested one after the other as they are taken.
pub struct Pages<K> {
    api: Api<K>,
    params: ListParams,
    done: bool,
}

impl<K> Pages<K>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    /// The list of `api` with `params`, `size` objects a page.
    pub fn new(api: Api<K>, params: ListParams, size: u32) -> Self {
        Self {
            api,
            params: params.limit(size),
            done: false,
        }
    }

    /// The next page's objects; `None` after the last. After an error, the list is to be made
    /// again from the start (a continue token expires with the version it was issued at).
    pub async fn next(&mut self) -> Option<Result<Vec<K>, kube::Error>> {
        if self.done {
            return None;
        }
        let list = match self.api.list(&self.params).await {
            Ok(list) => list,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            // Later pages come from the first one's snapshot: the token carries its version.
            Some(token) => self.params.continue_token = Some(token),
            None => self.done = true,
        }
        Some(Ok(list.items))
    }
}
