//! How records are laid out in the embedded store: MessagePack with field names (so fields can
//! be added later), memory items zstd-compressed above a size, answers keyed by task.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;
use crate::types::MemoryItem;

const PLAIN: u8 = 0;
const ZSTD: u8 = 1;

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(value).map_err(|e| e.to_string())
}

/// Decodes a record; `location` names it in the error.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    location: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        location: location(),
        message: e.to_string(),
    })
}

/// Encodes a memory item, compressed when its encoding is over `compress_above` bytes.
pub fn encode_item(item: &MemoryItem, compress_above: usize) -> Result<Vec<u8>, String> {
    let plain = encode(item)?;
    if plain.len() > compress_above {
        let mut out = vec![ZSTD];
        out.extend(zstd::bulk::compress(&plain, 3).map_err(|e| e.to_string())?);
        if out.len() < plain.len() {
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(plain.len() + 1);
    out.push(PLAIN);
    out.extend(plain);
    Ok(out)
}

/// Largest decompressed item accepted (a bound on what a corrupt header could ask for).
const MAX_ITEM: usize = 256 << 20;

/// Decodes a memory item.
pub fn decode_item(
    bytes: &[u8],
    location: impl FnOnce() -> String,
) -> Result<MemoryItem, StoreError> {
    match bytes.split_first() {
        Some((&PLAIN, rest)) => decode(rest, location),
        Some((&ZSTD, rest)) => match zstd::bulk::decompress(rest, MAX_ITEM) {
            Ok(plain) => decode(&plain, location),
            Err(e) => Err(StoreError::Corrupt {
                location: location(),
                message: format!("cannot decompress: {e}"),
            }),
        },
        _ => Err(StoreError::Corrupt {
            location: location(),
            message: "unknown item encoding".into(),
        }),
    }
}

/// `<task id>.<rest>` → (task id as u128, rest); other keys file under task 0.
pub fn response_key(key: &str) -> (u128, &str) {
    match key.split_once('.') {
        Some((task, rest)) => match task.parse::<uuid::Uuid>() {
            Ok(u) => (u.as_u128(), rest),
            Err(_) => (0, key),
        },
        None => (0, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::item;
    use crate::types::MemoryKind;

    #[test]
    fn large_items_are_compressed_and_come_back_whole() {
        let net = crate::ids::NetworkId::new();
        let big = item(net, MemoryKind::Fact, &"same words again ".repeat(2000));
        let bytes = encode_item(&big, 1024).unwrap();
        assert_eq!(bytes[0], ZSTD);
        assert!(bytes.len() < 4000, "{} bytes", bytes.len());
        assert_eq!(decode_item(&bytes, String::new).unwrap(), big);
        let small = item(net, MemoryKind::Fact, "short");
        let bytes = encode_item(&small, 1024).unwrap();
        assert_eq!(bytes[0], PLAIN);
        assert_eq!(decode_item(&bytes, String::new).unwrap(), small);
        assert!(decode_item(&[9, 1, 2], || "x".into()).is_err());
        assert!(decode_item(&[ZSTD, 1, 2, 3], || "x".into()).is_err());
    }

    #[test]
    fn answers_are_keyed_by_their_task() {
        let t = crate::ids::TaskId::new();
        let key = format!("{t}.3");
        assert_eq!(response_key(&key), (t.as_uuid().as_u128(), "3"));
        assert_eq!(response_key("free-form"), (0, "free-form"));
    }
}
