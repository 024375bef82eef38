//! naevus's errors as Python exceptions, with the command line's messages: a file that is not
//! there is a FileNotFoundError, one that may not be read a PermissionError, anything else
//! the caller gave that naevus cannot use a ValueError.

use pyo3::PyErr;
use pyo3::exceptions::{PyFileNotFoundError, PyPermissionError, PyValueError};

/// The exception for `error`, by the first cause in its chain that says what kind it is.
pub fn to_python(error: anyhow::Error) -> PyErr {
    let message = format!("{error:#}");
    for cause in error.chain() {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| match cause.downcast_ref::<naevus_run::RunError>() {
            Some(naevus_run::RunError::NotARun { source, .. } | naevus_run::RunError::Io { source, .. }) => Some(source),
            _ => None,
        });
        let io = io.or_else(|| match cause.downcast_ref::<naevus_data::DataError>() {
            Some(naevus_data::DataError::Io { source, .. }) => Some(source),
            _ => None,
        });
        match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::NotFound) => return PyFileNotFoundError::new_err(message),
            Some(std::io::ErrorKind::PermissionDenied) => return PyPermissionError::new_err(message),
            _ => {}
        }
    }
    PyValueError::new_err(message)
}

/// `result` with its error as a Python exception.
pub fn or_raise<T>(result: anyhow::Result<T>) -> pyo3::PyResult<T> {
    result.map_err(to_python)
}
