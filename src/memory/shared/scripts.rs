//! The Lua scripts of the shared memory, and how their answers read. Redis runs each one
//! atomically, so a read and the write that depends on it are never separated by another
//! instance's.

use crate::memory::{Newer, shown_time};
use crate::plan::Imsi;

/// Admits a delivery in one round trip when nothing stands in its way. Unless the event was
/// processed already (`duplicate`), takes the `running` lease, then each IMSI's lock in sorted
/// order, as far as they are free (or already this token's). At the first one held by another
/// delivery it stops and keeps what it took (`busy`, with how many keys it holds): the
/// delivery waits and asks again with the same token, as a delivery waits for each lock in
/// order in one process, and the same order for every delivery means none waits in a circle.
/// With everything taken, names each IMSI that already has a newer event applied (its position
/// and its time, after `admitted`): the event's calls to it are skipped. When every IMSI has one,
/// refuses (and gives back) the delivery (`stale`, with the first IMSI's position and time).
/// An IMSI's time is a field of its hundred's hash (see `SharedMemory::applied`), else the key
/// of the layout before it.
/// KEYS: done, running, lock x n (sorted), hundred x n, legacy x n. ARGV: token, lease ms,
/// dedup (1/0), n, event time in µs ('' = none), field x n.
pub(super) const ADMIT: &str = r"
local token, n = ARGV[1], tonumber(ARGV[4])
local first = ARGV[3] == '1' and 2 or 3
local function give_back()
  for k = first, 2 + n do
    if redis.call('GET', KEYS[k]) == token then redis.call('DEL', KEYS[k]) end
  end
end
if first == 2 and redis.call('EXISTS', KEYS[1]) == 1 then
  give_back()
  return {'duplicate'}
end
for i = first, 2 + n do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= token then return {'busy', tostring(i - first)} end
  redis.call('SET', KEYS[i], token, 'PX', ARGV[2])
end
local answer = {'admitted'}
if ARGV[5] ~= '' then
  local stamp = tonumber(ARGV[5])
  for i = 1, n do
    local last = redis.call('HGET', KEYS[2 + n + i], ARGV[5 + i]) or redis.call('GET', KEYS[2 + 2 * n + i])
    if last and stamp < tonumber(last) then
      table.insert(answer, tostring(i))
      table.insert(answer, last)
    end
  end
  if n > 0 and #answer == 1 + 2 * n then
    give_back()
    return {'stale', answer[2], answer[3]}
  end
end
return answer
";

/// Records a success: the event as done, each IMSI's time (forward only) in its hundred's hash,
/// whose time to live starts again, then releases the leases this token holds. A time still in
/// the layout before (one key per IMSI) moves into the hash. Times stay the decimal text they
/// came as (Lua's numbers would print them in exponent form).
/// KEYS: done, running, hundred x n, legacy x n, lock x n.
/// ARGV: token, dedup ms (0 = none), event time in µs ('' = none), stale ms, n, field x n.
pub(super) const COMMIT: &str = r"
local n = tonumber(ARGV[5])
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], '1', 'PX', ARGV[2]) end
if ARGV[3] ~= '' then
  local stamp = tonumber(ARGV[3])
  for i = 1, n do
    local hundred, legacy, field = KEYS[2 + i], KEYS[2 + n + i], ARGV[5 + i]
    local kept = redis.call('HGET', hundred, field)
    local old = redis.call('GET', legacy)
    local newest = kept
    if old and (not newest or tonumber(old) > tonumber(newest)) then newest = old end
    if not newest or stamp > tonumber(newest) then newest = ARGV[3] end
    if newest ~= kept then
      redis.call('HSET', hundred, field, newest)
      redis.call('PEXPIRE', hundred, ARGV[4])
    end
    if old then redis.call('DEL', legacy) end
  end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
for i = 1, n do
  if redis.call('GET', KEYS[2 + 2 * n + i]) == ARGV[1] then redis.call('DEL', KEYS[2 + 2 * n + i]) end
end
return 1
";

/// Releases every key given whose value is this token.
pub(super) const RELEASE: &str = r"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
";

/// What one [`ADMIT`] answered.
pub(super) enum Attempt {
    /// Everything taken; the calls to these IMSIs are stale.
    Admitted {
        newer: Vec<Newer>,
    },
    Duplicate,
    /// Another delivery holds the event or an IMSI; this one holds the first `held` keys.
    Busy {
        held: usize,
    },
    Stale {
        imsi: Imsi,
        applied: String,
    },
}

pub(super) fn read_attempt(answer: &[String], locked: &[Imsi]) -> Option<Attempt> {
    match answer {
        [word, newer @ ..] if word == "admitted" && newer.len() % 2 == 0 => Some(Attempt::Admitted {
            newer: newer
                .chunks_exact(2)
                .map(|pair| newer_at(locked, &pair[0], &pair[1]))
                .collect::<Option<_>>()?,
        }),
        [word] if word == "duplicate" => Some(Attempt::Duplicate),
        [word, held] if word == "busy" => Some(Attempt::Busy {
            held: held.parse().ok()?,
        }),
        [word, position, last] if word == "stale" => {
            let Newer { imsi, applied } = newer_at(locked, position, last)?;
            Some(Attempt::Stale { imsi, applied })
        }
        _ => None,
    }
}

/// The IMSI at the script's (1-based) `position` and the time `last` it has applied.
fn newer_at(locked: &[Imsi], position: &str, last: &str) -> Option<Newer> {
    let imsi = locked.get(position.parse::<usize>().ok()?.checked_sub(1)?)?;
    Some(Newer {
        imsi: imsi.clone(),
        applied: shown_time(last.parse().ok()?),
    })
}
