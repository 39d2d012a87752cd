from lrgan_dist.cli import main

main()
