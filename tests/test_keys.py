from runyard import keys


def test_generated_keys_are_well_formed_and_unique() -> None:
    made = {keys.generate() for _ in range(200)}
    assert len(made) == 200
    for k in made:
        assert k.startswith("ry_") and keys.well_formed(k)
        assert len(keys.digest(k)) == 64 and keys.key_id(k).startswith("key_")


def test_a_mistyped_key_fails_the_checksum() -> None:
    k = keys.generate()
    flipped = k[:10] + ("a" if k[10] != "a" else "b") + k[11:]
    assert not keys.well_formed(flipped)
    assert not keys.well_formed("ry_short")
    assert not keys.well_formed("xx_" + k[3:])


def test_scopes_nest() -> None:
    assert keys.allows(["admin"], "read") and keys.allows(["write"], "write")
    assert not keys.allows(["read"], "write") and not keys.allows([], "read")
