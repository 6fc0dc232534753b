//! Byte-level mutation for the workspace's property tests (every parser is run on mutated valid
//! files): one definition, so every crate mutates the same way.

/// One edit: at `pos` (taken modulo the length), with byte `byte`, of kind `kind % 4`: replace
/// the byte, truncate there, insert the byte, or delete the byte.
pub type Edit = (usize, u8, u8);

/// `bytes` with the `edits` applied in order (positions wrap, so any values are valid).
pub fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for &(pos, byte, kind) in edits {
        let i = pos % bytes.len().max(1);
        match kind % 4 {
            0 if i < bytes.len() => bytes[i] = byte,
            1 => bytes.truncate(i),
            2 => bytes.insert(i.min(bytes.len()), byte),
            3 if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    #[test]
    fn edits_apply_in_order_and_wrap() {
        let b = super::mutate(b"abcd".to_vec(), &[(1, b'X', 0), (9, b'Y', 2), (0, 0, 3)]);
        assert_eq!(b, b"YXcd");
        assert!(super::mutate(Vec::new(), &[(5, 1, 0), (3, 1, 3), (2, 7, 1)]).is_empty());
    }
}
