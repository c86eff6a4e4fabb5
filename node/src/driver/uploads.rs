//! The driver's part in uploads: the threads that read admitted chunks off
//! the event loop. Which requests are admitted, held or refused (`Busy`,
//! `Declined`) is the protocol behaviour's ([`crate::net::serving`]).

use std::sync::Arc;

use super::serve::reader::{ReadError, Reader};
use crate::store::Store;

/// Why an admitted chunk cannot be read now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(super) enum ReaderError {
    #[error("starting the chunk readers: {0}")]
    Spawn(#[source] std::io::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The chunk readers, started with the first chunk served.
#[derive(Debug, Default)]
pub(super) struct Uploads {
    reader: Option<Reader>,
}

impl Uploads {
    /// The chunk readers on `store`, started on first use.
    pub fn reader<S: Store + ?Sized + 'static>(
        &mut self,
        store: &Arc<S>,
    ) -> Result<&Reader, ReaderError> {
        if self.reader.is_none() {
            let store = store.clone();
            self.reader = Some(Reader::spawn(store).map_err(ReaderError::Spawn)?);
        }
        self.reader
            .as_ref()
            .ok_or(ReaderError::Read(ReadError::Gone))
    }
}
