from xl_ecom.cli import main

raise SystemExit(main())
