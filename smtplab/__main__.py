from smtplab.cli import main

raise SystemExit(main())
