from pinid.cli import main

raise SystemExit(main())
