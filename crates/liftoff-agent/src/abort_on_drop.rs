//! A spawned task tied to the future that spawned it: aborted when its
//! guard is dropped, so a job dropped midway (cancelled, or its agent torn
//! down) leaves no lease being renewed behind it.

use tokio::task::JoinHandle;

pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
