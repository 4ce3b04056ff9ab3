mkdir -p dir/sub && echo target > dir/t.txt && echo s > dir/sub/s.txt && ln -s dir/t.txt link-to-file && ln -s dir link-to-dir && ln -s t.txt dir/inner-link
