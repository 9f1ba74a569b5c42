//! ROAD's error: why an imputation or a score could not be computed.

/// Why an imputation or a score could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoadError {
    /// The solver hit its iteration cap before the convergence test passed.
    #[error("ROAD imputation did not converge: relative residual {residual:.3e} after {iterations} iterations")]
    NotConverged {
        /// Iterations run.
        iterations: usize,
        /// ‖b − L x‖₂ / ‖b‖₂ at the end.
        residual: f64,
    },
    /// The classifier's probabilities could not be computed.
    #[error("ROAD: {0}")]
    Probability(String),
    /// A slice does not have the length its dimensions say.
    #[error("ROAD: {what} has {got} values, expected {expected}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Length expected from the dimensions.
        expected: usize,
        /// Length given.
        got: usize,
    },
}
