use super::*;

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a);
    m
}

#[test]
fn only_port_zero_binds_on_loopback_are_ephemeral() {
    let mut v6_loop = [0u8; 16];
    v6_loop[15] = 1;
    assert!(ephemeral_loopback_bind(DIR_BIND, 0, &v6_loop));
    assert!(ephemeral_loopback_bind(DIR_BIND, 0, &v4([127, 0, 0, 1])));
    assert!(ephemeral_loopback_bind(DIR_BIND, 0, &v4([127, 9, 9, 9])));
    // A fixed port, another address, or a connect: judged as usual.
    assert!(!ephemeral_loopback_bind(DIR_BIND, 8080, &v6_loop));
    assert!(!ephemeral_loopback_bind(DIR_BIND, 0, &v4([0, 0, 0, 0])));
    assert!(!ephemeral_loopback_bind(DIR_BIND, 0, &[0u8; 16]));
    assert!(!ephemeral_loopback_bind(DIR_BIND, 0, &v4([10, 0, 0, 1])));
    assert!(!ephemeral_loopback_bind(DIR_CONNECT, 0, &v6_loop));
    let mut other = v6_loop;
    other[0] = 0xfe;
    assert!(!ephemeral_loopback_bind(DIR_BIND, 0, &other));
}

#[test]
fn a_name_word_mask_covers_exactly_the_names_bytes() {
    for len in 0..=200u32 {
        for k in 0..name_words::WORDS as u32 {
            let mut want = 0u64;
            for b in 0..8 {
                if k * 8 + b < len {
                    want |= 0xff << (8 * b);
                }
            }
            assert_eq!(name_words::mask(k, len), want, "word {k} of {len} bytes");
        }
    }
}
