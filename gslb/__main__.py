from gslb.cli import main

raise SystemExit(main())
