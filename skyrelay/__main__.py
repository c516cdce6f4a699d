from skyrelay.cli import main

raise SystemExit(main())
