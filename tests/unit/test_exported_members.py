import bridge


def test_all_is_sorted_and_exported() -> None:
    assert bridge.__all__ == sorted(bridge.__all__)
    for name in bridge.__all__:
        assert hasattr(bridge, name)
