mkdir -p dir/sub && echo one > dir/a && ln dir/a dir/b && ln -s ../outside dir/out && ln -s sub dir/s && echo two > dir/sub/c
