"""Warnings and errors specific to skbnn (scikit-learn's own are used
everywhere else: ``ConvergenceWarning``, ``NotFittedError``, ...)."""
from sklearn.exceptions import InconsistentVersionWarning

__all__ = ["InconsistentSkbnnVersionWarning"]


class InconsistentSkbnnVersionWarning(InconsistentVersionWarning):
    """Warning raised when an estimator is unpickled by another skbnn version.

    A subclass of scikit-learn's :class:`~sklearn.exceptions.InconsistentVersionWarning`,
    so ``warnings.filterwarnings("error", category=InconsistentVersionWarning)``
    covers both libraries.

    Parameters
    ----------
    estimator_name : str
        Estimator name.
    current_skbnn_version : str
        The skbnn version doing the unpickling.
    original_skbnn_version : str
        The skbnn version that pickled the estimator.
    """

    def __init__(self, *, estimator_name, current_skbnn_version, original_skbnn_version):
        import sklearn

        super().__init__(estimator_name=estimator_name,
                         current_sklearn_version=sklearn.__version__,
                         original_sklearn_version=sklearn.__version__)
        self.current_skbnn_version = current_skbnn_version
        self.original_skbnn_version = original_skbnn_version

    def __str__(self):
        return (f"Trying to unpickle estimator {self.estimator_name} from skbnn version "
                f"{self.original_skbnn_version} when using version "
                f"{self.current_skbnn_version}. This might lead to breaking code or invalid "
                "results. Use at your own risk; refitting with this version is safe.")
