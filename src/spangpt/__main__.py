from spangpt.cli import main

raise SystemExit(main())
