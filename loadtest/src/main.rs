fn main() {
    eprintln!("stampd-loadtest: not implemented yet (issue 6)");
    std::process::exit(2);
}
