"""Tests for tlcourse.training.GroupRates: one optimizer (one learning rate) per group of weights."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tlcourse import training as T  # noqa: E402


def _net(seed: int = 0):
    inputs = keras.Input((6,))
    body = keras.layers.Dense(5, activation="relu", name="body",
                              kernel_initializer=keras.initializers.GlorotUniform(seed))
    head = keras.layers.Dense(3, name="head", kernel_initializer=keras.initializers.GlorotUniform(seed + 1))
    return keras.Model(inputs, head(body(inputs))), body, head


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 6)).astype("float32"), np.arange(64) % 3


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fit(model, epochs=2):
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)


def test_a_group_at_rate_zero_stays_put_the_other_moves():
    net, body, head = _net()
    model = T.GroupRates(net, {"head": head.trainable_weights, "body": body.trainable_weights}, rates=[1e-2, 0.0])
    model.compile(loss=LOSS)
    body0, head0 = body.get_weights(), head.get_weights()
    _fit(model)
    assert all(np.array_equal(a, b) for a, b in zip(body0, body.get_weights()))
    assert not np.allclose(head0[0], head.get_weights()[0])
    assert model.rates() == pytest.approx({"head": 1e-2, "body": 0.0})


def test_equal_rates_match_one_adam_optimizer():
    net_a, *_ = _net()
    net_b, body_b, head_b = _net()
    net_a.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
    _fit(net_a)
    model = T.GroupRates(net_b, {"head": head_b.trainable_weights, "body": body_b.trainable_weights},
                         rates={"head": 1e-2, "body": 1e-2})
    model.compile(loss=LOSS)
    _fit(model)
    for a, b in zip(net_a.get_weights(), net_b.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_set_rates_between_fits_does_not_retrace_and_takes_effect():
    net, body, head = _net()
    model = T.GroupRates(net, {"head": head.trainable_weights, "body": body.trainable_weights}, rates=[1e-2, 0.0])
    model.compile(loss=LOSS)
    _fit(model, epochs=1)
    step = model.train_function
    body0 = body.get_weights()
    model.set_rates({"body": 1e-2})
    _fit(model, epochs=1)
    assert model.train_function is step
    assert not np.allclose(body0[0], body.get_weights()[0])


def test_bad_groups_and_rates_are_named():
    net, body, head = _net()
    with pytest.raises(ValueError, match="in no group"):
        T.GroupRates(net, {"head": head.trainable_weights})
    with pytest.raises(ValueError, match="in group 'head' and in group 'both'"):
        T.GroupRates(net, {"head": head.trainable_weights, "both": head.trainable_weights + body.trainable_weights})
    other, *_ = _net(seed=3)
    with pytest.raises(ValueError, match="not a trainable weight"):
        T.GroupRates(net, {"head": head.trainable_weights, "body": body.trainable_weights + other.trainable_weights})
    model = T.GroupRates(net, {"head": head.trainable_weights, "body": body.trainable_weights})
    with pytest.raises(ValueError, match=">= 0"):
        model.set_rates([1e-3, -1.0])
    with pytest.raises(ValueError, match="unknown groups"):
        model.set_rates({"neck": 1e-3})
    with pytest.raises(ValueError, match="2 groups"):
        model.set_rates([1e-3])
