"""scikit-learn's estimator checks over every public estimator and
transformer, with no expected failures."""
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbnn import (BEPClassifier, BEPRecurrentClassifier, LocalBinaryClassifier,
                   LowMemBNNClassifier, MedianBinarizer, ThermometerEncoder)

ESTIMATORS = [
    LocalBinaryClassifier(),
    LocalBinaryClassifier(hidden_layer_sizes=(35, 35), group_size=7, odd_init=False,
                          ternary_weights=True, ternary_activations=True, n_jobs=2),
    BEPClassifier(),
    BEPClassifier(hidden_layer_sizes=(35, 35, 35), group_size=7, group_schedule="train",
                  prototypes="random", odd_init=False, ternary_weights=True, selection="hidden",
                  ternary_activations=True, n_jobs=2),
    # 2-D input = univariate series; the paper-size default (1035) triples the time
    BEPRecurrentClassifier(state_size=255, output_size=255, expansion_size=128, max_iter=30),
    BEPRecurrentClassifier(state_size=105, output_size=35, expansion_size=None, group_size=(7, 5),
                           rnn_mask="any", backward_horizon=2, strict_ties=True, n_jobs=2),
    LowMemBNNClassifier(hidden_layer_sizes=(64, 64), max_iter=40),
    LowMemBNNClassifier(hidden_layer_sizes=(64,), binarize_input="auto", solver="bop",
                        training="standard", max_iter=30, n_jobs=2),
    # a convolutional network: a one-row map of any length (input_shape -1)
    LowMemBNNClassifier(architecture=[("conv", 8, 1), ("dense", 32)],
                        input_shape=(1, 1, -1), max_iter=40),
    # the learning rules other than backprop; sized so that the check's
    # training accuracy (> 0.83 on 2-feature blobs) holds for random_state
    # 0 to 4, not for one lucky draw of the feedback matrices
    LowMemBNNClassifier(hidden_layer_sizes=(64, 64), algorithm="dfa", max_iter=100),
    LowMemBNNClassifier(architecture=[("conv", 32, 1), ("dense", 128)], input_shape=(1, 1, -1),
                        algorithm="drtp", max_iter=100, n_jobs=2),
    LowMemBNNClassifier(hidden_layer_sizes=(64, 64), algorithm="hsic", training="standard",
                        batch_size=32, max_iter=40),
    LowMemBNNClassifier(hidden_layer_sizes=(256,), algorithm="sigprop", batch_size=32,
                        max_iter=40),
    MedianBinarizer(),
    MedianBinarizer(global_median=True),
    ThermometerEncoder(),
]


@parametrize_with_checks(ESTIMATORS, xfail_strict=True)
def test_sklearn_compatible(estimator, check):
    check(estimator)
