"""scikit-learn's estimator checks over every public estimator and
transformer, with no expected failures."""
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbnn import (BEPClassifier, LocalBinaryClassifier, LowMemBNNClassifier, MedianBinarizer,
                   ThermometerEncoder)

ESTIMATORS = [
    LocalBinaryClassifier(),
    LocalBinaryClassifier(hidden_layer_sizes=(35, 35), group_size=7, n_jobs=2),
    BEPClassifier(),
    BEPClassifier(hidden_layer_sizes=(35, 35, 35), group_size=7, group_schedule="train",
                  prototypes="random", n_jobs=2),
    LowMemBNNClassifier(hidden_layer_sizes=(64, 64), max_iter=40),
    LowMemBNNClassifier(hidden_layer_sizes=(64,), binarize_input="auto", solver="bop",
                        training="standard", max_iter=30, n_jobs=2),
    MedianBinarizer(),
    MedianBinarizer(global_median=True),
    ThermometerEncoder(),
]


@parametrize_with_checks(ESTIMATORS, xfail_strict=True)
def test_sklearn_compatible(estimator, check):
    check(estimator)
