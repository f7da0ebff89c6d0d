from gardenbuild.cli import run

run()
