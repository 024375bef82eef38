//! `naevus._naevus`: the engine behind `import naevus`. The Python package (python/naevus)
//! turns numpy arrays and PIL images into what these functions take and their answers into
//! numpy arrays; everything here goes through the same library calls as the command line
//! (one input path, one model type, one metric table), with the GIL released while it works.

mod errors;
mod jobs;
mod model;

use pyo3::prelude::*;

#[pymodule]
fn _naevus(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<model::Model>()?;
    module.add_function(wrap_pyfunction!(jobs::evaluate_json, module)?)?;
    module.add_function(wrap_pyfunction!(jobs::prepare, module)?)?;
    module.add_function(wrap_pyfunction!(jobs::train, module)?)?;
    Ok(())
}
