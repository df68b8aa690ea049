from jobworker.cli import main

main()
