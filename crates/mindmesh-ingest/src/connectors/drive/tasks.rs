//! Running the connector's API calls side by side: each in a task of its own, so that one
//! waiting out a `Retry-After` holds back none of the others.

use super::*;

/// Listings, change logs or permission reads under way per request the client may have
/// in flight (it sends `ingest.fetch_concurrency` at once): one that Google throttled
/// waits for its retry while the others go on.
pub(super) const CALLS_PER_REQUEST: usize = 16;

/// How long a page of the listing waits for its last listings once half of them are
/// answered; those still waiting (a `Retry-After`) come with a later page.
pub(super) const STRAGGLER_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `work` with up to `n` under way at once — one that is slow (waiting out a
/// `Retry-After`) holds back none of the others — and returns the outputs in order.
pub(super) async fn side_by_side<T, Fut>(work: impl IntoIterator<Item = Fut>, n: usize) -> Vec<T>
where
    Fut: std::future::Future<Output = T>,
{
    let numbered: Vec<Numbered<Fut>> = work
        .into_iter()
        .enumerate()
        .map(|(i, f)| Numbered(i, f))
        .collect();
    let mut out: Vec<(usize, T)> = futures::stream::iter(numbered)
        .map(Numbered::run)
        .buffer_unordered(n.max(1))
        .collect()
        .await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

/// A future and its place among others.
pub(super) struct Numbered<Fut>(usize, Fut);

impl<Fut: std::future::Future> Numbered<Fut> {
    async fn run(self) -> (usize, Fut::Output) {
        (self.0, self.1.await)
    }
}

/// Every page of a listing: `fetch(page_token)` until no `nextPageToken`.
pub(super) async fn all_pages<T, F, Fut>(name: &str, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let (items, next) = fetch(token.take()).await?;
        out.extend(items);
        match next.filter(|t| !t.is_empty()) {
            None => return Ok(out),
            Some(next) if !seen.insert(next.clone()) => {
                return Err(Error::Unavailable(format!(
                    "google {name}: the source returned a page token it had returned before (a loop)"
                )));
            }
            Some(next) => token = Some(next),
        }
    }
    Err(Error::Unavailable(format!(
        "google {name}: more than {MAX_PAGES} pages"
    )))
}

/// One call under way in a task of its own; dropped, it is abandoned.
pub(super) struct Task<T>(pub(super) tokio::task::JoinHandle<Result<T>>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Task<T> {
    pub(super) async fn answer(mut self) -> Result<T> {
        (&mut self.0)
            .await
            .map_err(|_| Error::Internal("google drive: a read stopped".into()))?
    }

    pub(super) fn finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Waits until every task is finished, or half of them are and then
/// [`STRAGGLER_GRACE`] has passed: those still waiting (out a `Retry-After`) come
/// with a later page.
pub(super) async fn most_of<T>(tasks: &[Task<T>]) {
    let mut most_at: Option<std::time::Instant> = None;
    loop {
        let finished = tasks.iter().filter(|t| t.finished()).count();
        if finished == tasks.len() {
            return;
        }
        if finished * 2 >= tasks.len() {
            let at = *most_at.get_or_insert_with(std::time::Instant::now);
            if at.elapsed() >= STRAGGLER_GRACE {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
