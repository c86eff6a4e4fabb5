fn main() {
    eprintln!("pollen-sim: the simulator engine is not built yet (see the simulator issue)");
    std::process::exit(2)
}
