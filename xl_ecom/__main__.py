from xl_ecom.frontends.cli import main

raise SystemExit(main())
