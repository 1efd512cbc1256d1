//! The server's PostgreSQL store read as a log: the same `events` columns
//! as its SQLite file, read a page at a time in id order so that a store of
//! any size is read in bounded memory.

use anyhow::Context;
use postgres::Client;

/// Events read per round trip.
const PAGE: i64 = 10_000;

/// Whether `input` names a PostgreSQL store rather than a file.
pub(crate) fn is_url(input: &str) -> bool {
    input.starts_with("postgres://") || input.starts_with("postgresql://")
}

/// One stored event, as `relaycb export` and `relaycb analyze` need it.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) id: i64,
    pub(crate) received_at_ms: i64,
    pub(crate) last_received_at_ms: i64,
    pub(crate) deliveries: i64,
    pub(crate) raw: Vec<u8>,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter<'a> {
    /// First received at or after, ms.
    pub(crate) since_ms: Option<i64>,
    /// First received before, ms.
    pub(crate) until_ms: Option<i64>,
    /// Only this task's.
    pub(crate) task: Option<&'a str>,
}

/// Connects to the store at `url`; the caller names the store in its
/// error.
pub(crate) fn connect(url: &str) -> anyhow::Result<Client> {
    let store = relaycb_pg::Store::parse(url)?;
    store.connect().context("cannot connect to PostgreSQL")
}

/// How many events the store holds.
pub(crate) fn count(client: &mut Client) -> anyhow::Result<u64> {
    let total: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .context("the database does not look like a relaycb-server store")?
        .get(0);
    Ok(u64::try_from(total).unwrap_or_default())
}

/// Calls `each` with every event that passes `filter`, in id order.
pub(crate) fn each_event(
    client: &mut Client,
    filter: &Filter<'_>,
    mut each: impl FnMut(StoredEvent) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let page = client
        .prepare(
            "SELECT id, received_at_ms, last_received_at_ms, deliveries, raw FROM events
             WHERE id > $1
               AND ($2::BIGINT IS NULL OR received_at_ms >= $2)
               AND ($3::BIGINT IS NULL OR received_at_ms < $3)
               AND ($4::TEXT IS NULL OR task_id = $4 OR attributed_to = $4)
             ORDER BY id LIMIT $5",
        )
        .context("the database does not look like a relaycb-server store")?;
    let mut after = 0i64;
    loop {
        let rows = client.query(
            &page,
            &[
                &after,
                &filter.since_ms,
                &filter.until_ms,
                &filter.task,
                &PAGE,
            ],
        )?;
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            let event = StoredEvent {
                id: row.try_get(0)?,
                received_at_ms: row.try_get(1)?,
                last_received_at_ms: row.try_get(2)?,
                deliveries: row.try_get(3)?,
                raw: row.try_get(4)?,
            };
            after = event.id;
            each(event)?;
        }
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("postgres://u@h/db"));
        assert!(is_url("postgresql://u@h/db"));
        assert!(!is_url("./postgres.db"));
    }
}
