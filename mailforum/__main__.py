from mailforum.cli import main

main()
