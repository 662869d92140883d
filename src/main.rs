//! Entry point: parse, run, print the error with its causes once, exit with its status.

fn main() {
    let cli = elt::cli::Cli::parse_args();
    let code = match elt::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            let message = elt::error::chain(&e);
            log::error!(target: elt::logging::REPORTED, "{message}");
            eprintln!("elt: error: {message}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
