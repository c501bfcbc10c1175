import bridge


def test_all_is_sorted_and_exported() -> None:
    assert bridge.__all__ == sorted(bridge.__all__)
    for name in bridge.__all__:
        assert hasattr(bridge, name)


def test_module_all_is_sorted_and_exported() -> None:
    import importlib

    for name in ("bridge.registry.models", "bridge.ops.onboarding", "bridge.urlpolicy", "bridge.api.nonces"):
        module = importlib.import_module(name)
        assert module.__all__ == sorted(module.__all__), name
        for member in module.__all__:
            assert hasattr(module, member), (name, member)
