from decaywatch.cli import main

raise SystemExit(main())
