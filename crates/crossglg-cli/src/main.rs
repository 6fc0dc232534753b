//! `crossglg`: one binary for data, text, training, evaluation and inference.

use clap::Parser;

#[derive(Parser)]
#[command(name = "crossglg", version, about = "One-shot skeleton action recognition guided by LLM text (CrossGLG)")]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
